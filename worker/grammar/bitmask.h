// Token bitmasks as the sampler reads them: vocab_size bits in 32-bit words, token id i is bit
// (i % 32) of word (i / 32); a set bit means the token is allowed.
#pragma once

#include <cstddef>
#include <cstdint>

namespace r1::grammar {

inline size_t BitmaskWords(int64_t vocab_size) { return static_cast<size_t>((vocab_size + 31) / 32); }
inline void SetBit(uint32_t* bits, int32_t id) { bits[id >> 5] |= 1u << (id & 31); }
inline void ClearBit(uint32_t* bits, int32_t id) { bits[id >> 5] &= ~(1u << (id & 31)); }
inline bool TestBit(const uint32_t* bits, int32_t id) { return (bits[id >> 5] >> (id & 31)) & 1u; }

}  // namespace r1::grammar
