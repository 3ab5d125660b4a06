#include "worker/grammar/nfa.h"

namespace r1::grammar {

int32_t Nfa::NewState() {
  states_.emplace_back();
  return static_cast<int32_t>(states_.size() - 1);
}

void Nfa::AddBytes(int32_t from, uint8_t lo, uint8_t hi, int32_t to) {
  states_[from].bytes.push_back({lo, hi, to});
}
void Nfa::AddEps(int32_t from, int32_t to) { states_[from].eps.push_back(to); }
void Nfa::AddCall(int32_t from, int32_t rule, int32_t to) {
  states_[from].calls.push_back({rule, to});
}

Frag Nfa::Empty() {
  int32_t s = NewState();
  return {s, s};
}

Frag Nfa::Nothing() { return {NewState(), NewState()}; }

Frag Nfa::Literal(std::string_view bytes) {
  int32_t in = NewState(), cur = in;
  for (char c : bytes) {
    int32_t next = NewState();
    AddBytes(cur, static_cast<uint8_t>(c), static_cast<uint8_t>(c), next);
    cur = next;
  }
  return {in, cur};
}

Frag Nfa::Call(int32_t rule) {
  Frag f{NewState(), NewState()};
  AddCall(f.in, rule, f.out);
  return f;
}

Frag Nfa::Seq(const std::vector<Frag>& parts) {
  if (parts.empty()) return Empty();
  for (size_t i = 1; i < parts.size(); ++i) AddEps(parts[i - 1].out, parts[i].in);
  return {parts.front().in, parts.back().out};
}

Frag Nfa::Alt(const std::vector<Frag>& parts) {
  Frag f{NewState(), NewState()};
  for (const Frag& p : parts) {
    AddEps(f.in, p.in);
    AddEps(p.out, f.out);
  }
  return f;
}

Frag Nfa::Opt(Frag f) {
  AddEps(f.in, f.out);
  return f;
}

Frag Nfa::Star(Frag f) {
  // A fresh hub: entering and leaving it never skips into the middle of another loop.
  int32_t hub = NewState();
  AddEps(hub, f.in);
  AddEps(f.out, hub);
  return {hub, hub};
}

Frag Nfa::Repeat(const std::function<Frag()>& make, int64_t min, int64_t max) {
  std::vector<Frag> parts;
  for (int64_t i = 0; i < min && !overflow(); ++i) parts.push_back(make());
  if (max < 0) {
    parts.push_back(Star(make()));
  } else {
    // Optional copies nest, (x(x(x)?)?)?, so each exit is one epsilon away.
    Frag tail = Empty();
    for (int64_t i = max - 1; i >= min && !overflow(); --i) {
      Frag x = make();
      AddEps(x.out, tail.in);
      tail = Opt(Frag{x.in, tail.out});
    }
    parts.push_back(tail);
  }
  return Seq(parts);
}

}  // namespace r1::grammar
