// Which tokens a grammar state can read, by walking the vocabulary's byte trie: one table
// lookup per trie node, and a whole subtree skipped at the first byte the grammar refuses.
// States that only read bytes take a tight loop; calls and rule ends branch into the stack
// moves of stack_closure.h.
//
// Two walks:
//   ContextFree(q): tokens read from state q in a fresh frame, never returning below it. Where
//     q's rule may end with bytes of the token left, the trie node is an "exit": what follows
//     depends on the rules below, so the caller finishes those tokens with FromNodes.
//   FromNodes(nodes, stack): the rest of the tokens below each node, read from a full stack.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "worker/grammar/automaton.h"
#include "worker/grammar/stack_closure.h"
#include "worker/grammar/token_vocabulary.h"

namespace r1::grammar {

class TrieWalker {
 public:
  // Walks one of vocab's tries.
  TrieWalker(const Automaton& a, const TokenVocabulary& vocab, const TokenTrie& trie);

  // Sets the bits of the tokens state q reads in a fresh frame; appends exit nodes.
  void ContextFree(int32_t q, uint32_t* bits, std::vector<uint32_t>* exits);
  // For each node: sets the bits of the tokens below it readable from `stack` (whose top has
  // not been expanded yet), as if the node's prefix had been read.
  void FromNodes(const std::vector<uint32_t>& nodes, const Stack& stack, uint32_t* bits);

 private:
  void Walk(uint32_t node, Stack& stack);
  void Branch(uint32_t node, const Stack& stack);

  const Automaton& a_;
  const TokenTrie& trie_;
  size_t floor_ = 0;
  uint32_t* bits_ = nullptr;
  std::vector<uint32_t>* exits_ = nullptr;
  // One buffer of per-depth states per level of Walk recursion (stable addresses).
  std::vector<std::unique_ptr<int32_t[]>> buffers_;
  size_t level_ = 0;
  size_t buffer_len_;
};

}  // namespace r1::grammar
