#include "worker/grammar/matcher.h"

#include <algorithm>
#include <limits>

#include "worker/grammar/bitmask.h"

namespace r1::grammar {
namespace {

// Ambiguous recursive grammars (anyOf of two $refs that read the same text) keep one stack per
// reading; past this many the rest are dropped, so fewer texts are allowed, never more.
constexpr size_t kMaxStacks = 1024;

}  // namespace

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar,
                               std::vector<int32_t> eos_ids)
    : grammar_(std::move(grammar)), eos_ids_(std::move(eos_ids)) {
  Reset();
}

void GrammarMatcher::Reset() {
  Expansion e;
  Expand(grammar_->automaton(), Stack{grammar_->automaton().root_start()}, 0, &e);
  stacks_ = std::move(e.ready);
  complete_ = e.floor_done;
  terminated_ = false;
}

void GrammarMatcher::FillNextTokenBitmask(uint32_t* bits) const {
  const TokenVocabulary& vocab = grammar_->vocabulary();
  if (terminated_) {
    std::fill(bits, bits + vocab.bitmask_words(), 0u);
    return;
  }
  grammar_->FillMask(stacks_, bits);
  vocab.CopyDuplicates(bits);
  if (complete_) {
    for (int32_t id : eos_ids_)
      if (id >= 0 && id < vocab.vocab_size()) SetBit(bits, id);
  }
}

bool GrammarMatcher::AcceptToken(int32_t id) {
  if (terminated_) return false;
  if (std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end()) {
    if (!complete_) return false;
    terminated_ = true;
    return true;
  }
  if (!grammar_->vocabulary().IsGrammarToken(id)) return false;
  return AcceptBytes(grammar_->vocabulary().TokenBytes(id));
}

bool GrammarMatcher::AcceptBytes(std::string_view bytes) {
  if (terminated_) return false;
  std::vector<Stack> stacks;
  bool complete = complete_;
  if (!Step(bytes, &stacks, &complete)) return false;
  stacks_ = std::move(stacks);
  complete_ = complete;
  return true;
}

bool GrammarMatcher::CanAcceptBytes(std::string_view bytes) const {
  if (terminated_) return false;
  std::vector<Stack> stacks;
  bool complete = complete_;
  return Step(bytes, &stacks, &complete);
}

// Reads bytes from the current stacks; *stacks and *complete get the state after them.
bool GrammarMatcher::Step(std::string_view bytes, std::vector<Stack>* stacks, bool* complete) const {
  const Automaton& a = grammar_->automaton();
  if (bytes.empty()) {
    *stacks = stacks_;
    return true;
  }
  const std::vector<Stack>* cur = &stacks_;
  for (char c : bytes) {
    Expansion e;
    for (const Stack& s : *cur) {
      const int32_t t = a.Next(s.back(), static_cast<uint8_t>(c));
      if (t < 0) continue;
      Stack moved = s;
      moved.back() = t;
      Expand(a, moved, 0, &e);  // appends; sorted and unique when done
    }
    if (e.ready.empty() && !e.floor_done) return false;
    if (e.ready.size() > kMaxStacks) e.ready.resize(kMaxStacks);
    *stacks = std::move(e.ready);
    *complete = e.floor_done;
    cur = stacks;
  }
  return true;
}

uint32_t GrammarMatcher::MinBytesToComplete() const {
  if (complete_ || terminated_) return 0;
  const Automaton& a = grammar_->automaton();
  uint32_t best = std::numeric_limits<uint32_t>::max();
  for (const Stack& s : stacks_) {
    uint64_t sum = 0;
    for (int32_t q : s) sum += a.min_complete(q);
    best = static_cast<uint32_t>(std::min<uint64_t>(best, sum));
  }
  return best;
}

}  // namespace r1::grammar
