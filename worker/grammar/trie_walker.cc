#include "worker/grammar/trie_walker.h"

#include "worker/grammar/bitmask.h"

namespace r1::grammar {

TrieWalker::TrieWalker(const Automaton& a, const TokenVocabulary& vocab, const TokenTrie& trie)
    : a_(a), trie_(trie), buffer_len_(vocab.max_token_bytes() + 1) {}

void TrieWalker::ContextFree(int32_t q, uint32_t* bits, std::vector<uint32_t>* exits) {
  floor_ = 1;
  bits_ = bits;
  exits_ = exits;
  Stack stack = {q};
  Walk(0, stack);
  exits_ = nullptr;
}

void TrieWalker::FromNodes(const std::vector<uint32_t>& nodes, const Stack& stack, uint32_t* bits) {
  floor_ = 0;
  bits_ = bits;
  exits_ = nullptr;
  Expansion e;
  Expand(a_, stack, 0, &e);
  for (uint32_t node : nodes)
    for (Stack& s : e.ready) Walk(node, s);
}

// Reads the subtree below `node` from `stack`, whose top reads bytes.
void TrieWalker::Walk(uint32_t node, Stack& stack) {
  if (level_ == buffers_.size()) buffers_.push_back(std::make_unique<int32_t[]>(buffer_len_));
  int32_t* qs = buffers_[level_++].get();  // qs[d]: the state after d bytes below `node`
  qs[0] = stack.back();
  const uint32_t depth0 = trie_.depth[node];
  const bool at_floor = stack.size() == floor_;
  const uint8_t* bytes = trie_.byte.data();
  const uint16_t* depth = trie_.depth.data();
  const uint32_t* end = trie_.end.data();
  const int32_t* token = trie_.token.data();
  for (uint32_t i = node + 1, stop = end[node]; i < stop;) {
    const uint32_t d = depth[i] - depth0;
    const int32_t q = a_.Next(qs[d - 1], bytes[i]);
    if (q < 0) {
      i = end[i];
      continue;
    }
    if (token[i] >= 0) SetBit(bits_, token[i]);
    if (end[i] == i + 1) {  // a leaf: no longer token continues here
      ++i;
      continue;
    }
    const uint8_t fl = a_.flags(q);
    if ((fl & Automaton::kCalls) || ((fl & Automaton::kAccept) && !at_floor)) {
      const int32_t saved = stack.back();
      stack.back() = q;
      Branch(i, stack);
      stack.back() = saved;
      i = end[i];
      continue;
    }
    // At the floor an ending rule is an exit: the caller finishes these tokens.
    if ((fl & Automaton::kAccept) && exits_) exits_->push_back(i);
    if (fl & Automaton::kBytes) {
      qs[d] = q;
      ++i;
    } else {
      i = end[i];
    }
  }
  --level_;
}

// The state after node's byte needs stack moves: walk the subtree from each stack they reach.
void TrieWalker::Branch(uint32_t node, const Stack& stack) {
  Expansion e;
  Expand(a_, stack, floor_, &e);
  if (e.floor_done && exits_ && floor_ > 0) exits_->push_back(node);
  for (Stack& s : e.ready) Walk(node, s);
}

}  // namespace r1::grammar
