// The BPE model working directly on bytes: the byte-level alphabet is undone when the
// vocabulary is loaded, so encoding never builds byte-level strings. Merges are looked up in
// a hash map keyed by the pair of ids; words already seen are served from a per-thread cache.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace r1::tokenizer {

// Open addressing, linear probing, one cache line per lookup in the common case: the merge
// table is read for every pair of symbols, so it is worth its own small hash table.
class MergeTable {
 public:
  struct Entry {
    uint64_t key;
    uint32_t rank;
    int32_t merged;
  };
  void Reserve(size_t n);
  void InsertOrAssign(uint64_t key, uint32_t rank, int32_t merged);
  const Entry* Find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = Slot(key);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are below 2^31, so never a key
  size_t Slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ULL) >> shift_; }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

class BpeModel {
 public:
  BpeModel();

  // The id of the token made of this single byte (-1 when there is none).
  void SetByteId(uint8_t byte, int32_t id) { byte_id_[byte] = id; }
  // Merging `left` and `right` gives `merged`; lower rank merges first. A later merge of the
  // same pair replaces an earlier one (as Hugging Face's merge map does).
  void AddMerge(int32_t left, int32_t right, int32_t merged, uint32_t rank) {
    merges_.InsertOrAssign(Key(left, right), rank, merged);
  }
  void ReserveMerges(size_t n) { merges_.Reserve(n); }
  // ignore_merges: a word that is a whole vocabulary token is that token.
  void SetWholeWordVocab(absl::flat_hash_map<std::string_view, int32_t> vocab) {
    whole_words_ = std::move(vocab);
    ignore_merges_ = true;
  }
  // unk id for bytes without a token (-1: such bytes are dropped, as HF does without unk).
  void SetUnkId(int32_t id) { unk_id_ = id; }

  // Appends the ids for one pre-tokenized word (raw bytes).
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;
  // The same, never using the cache (for tests and benchmarks).
  void EncodeWordUncached(std::string_view word, std::vector<int32_t>* out) const;

 private:
  using Merge = MergeTable::Entry;
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* FindMerge(int32_t a, int32_t b) const { return merges_.Find(Key(a, b)); }
  void MergeSmall(std::vector<int32_t>& sym, std::vector<int32_t>* out) const;
  void MergeLarge(std::vector<int32_t>& sym, std::vector<int32_t>* out) const;

  int32_t byte_id_[256];
  int32_t unk_id_ = -1;
  bool ignore_merges_ = false;
  uint64_t serial_;  // tells this model's cache entries from another's
  MergeTable merges_;
  absl::flat_hash_map<std::string_view, int32_t> whole_words_;
};

}  // namespace r1::tokenizer
