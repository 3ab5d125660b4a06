#include "worker/grammar/json_string.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "worker/grammar/json_text.h"
#include "worker/grammar/regex.h"
#include "worker/grammar/utf8_ranges.h"

namespace r1::grammar {
namespace {

bool NeedsEscape(int b) { return b < 0x20 || b == '"' || b == '\\'; }

// Adds a byte edge to a state of `out` that is being built (ranges arrive in order).
void Edge(Dfa& out, int32_t from, uint8_t lo, uint8_t hi, int32_t to) {
  auto& v = out.states[from].bytes;
  if (!v.empty() && v.back().to == to && v.back().hi + 1 == lo) v.back().hi = hi;
  else v.push_back({lo, hi, to});
}

int32_t AddState(Dfa& d) {
  d.states.emplace_back();
  return static_cast<int32_t>(d.states.size() - 1);
}

// From `from`, spell `esc` (an escape of json_text.h) ending in `to`, sharing the prefix
// states already made for this source state (keyed by the prefix).
void SpellEscape(Dfa& out, int32_t from, const std::string& esc, int32_t to,
                 std::map<std::string, int32_t>* prefix_state) {
  int32_t cur = from;
  for (size_t i = 0; i + 1 < esc.size(); ++i) {
    const std::string prefix = esc.substr(0, i + 1);
    auto it = prefix_state->find(prefix);
    if (it == prefix_state->end()) {
      const int32_t s = AddState(out);
      it = prefix_state->emplace(prefix, s).first;
      Edge(out, cur, static_cast<uint8_t>(esc[i]), static_cast<uint8_t>(esc[i]), s);
    }
    cur = it->second;
  }
  const uint8_t last = static_cast<uint8_t>(esc.back());
  Edge(out, cur, last, last, to);
}

}  // namespace

Dfa QuoteDfa(const Dfa& decoded) {
  // States: 0 before the opening quote, 1 after the closing one, then decoded's states, then
  // the states inside escapes.
  Dfa out;
  out.states.resize(2 + decoded.states.size());
  out.start = 0;
  out.states[1].accept = true;
  const int32_t base = 2;
  Edge(out, 0, '"', '"', base + decoded.start);
  for (size_t s = 0; s < decoded.states.size(); ++s) {
    const int32_t self = base + static_cast<int32_t>(s);
    const DfaState& st = decoded.states[s];
    std::vector<std::pair<uint8_t, int32_t>> escaped;
    for (const ByteRange& r : st.bytes) {
      for (int b = r.lo; b <= r.hi;) {
        int e = b;
        const bool esc = NeedsEscape(b);
        while (e < r.hi && NeedsEscape(e + 1) == esc) ++e;
        if (esc) {
          for (int x = b; x <= e; ++x) escaped.push_back({static_cast<uint8_t>(x), base + r.to});
        } else {
          Edge(out, self, static_cast<uint8_t>(b), static_cast<uint8_t>(e), base + r.to);
        }
        b = e + 1;
      }
    }
    if (st.accept) {
      // '"' (0x22) is never a raw edge, so the closing quote is unambiguous; keep ranges sorted.
      auto& v = out.states[self].bytes;
      auto pos = v.begin();
      while (pos != v.end() && pos->hi < '"') ++pos;
      v.insert(pos, ByteRange{'"', '"', 1});
    }
    std::map<std::string, int32_t> prefix_state;
    for (auto [b, to] : escaped) SpellEscape(out, self, JsonEscape(b), to, &prefix_state);
  }
  // Escape edges were appended after raw ones: restore the sorted order of every state.
  for (DfaState& st : out.states) {
    std::sort(st.bytes.begin(), st.bytes.end(),
              [](const ByteRange& a, const ByteRange& b) { return a.lo < b.lo; });
  }
  return out;
}

absl::StatusOr<Dfa> JsonStringDfa(const StringSpec& spec, const StringLimits& limits) {
  // Each counted character takes states: refuse at once what cannot fit.
  if (std::max(spec.min_length, spec.max_length) > static_cast<int64_t>(limits.max_states))
    return absl::ResourceExhaustedError("string length bound above the automaton size limit");
  Nfa nfa(limits.max_states);
  auto any_char = [&nfa] { return CodepointFrag(nfa, CodepointSet::All()); };
  Frag length = nfa.Repeat(any_char, spec.min_length, spec.max_length);
  R1_ASSIGN_OR_RETURN(Dfa decoded, Determinize(nfa, length, limits.max_states));
  if (spec.pattern) {
    Nfa pnfa(limits.max_states);
    R1_ASSIGN_OR_RETURN(Frag p, CompileRegex(pnfa, *spec.pattern, RegexMode::kSearch,
                                             limits.max_repeat));
    R1_ASSIGN_OR_RETURN(Dfa pattern, Determinize(pnfa, p, limits.max_states));
    decoded = Intersect(Minimize(Trim(pattern)), decoded);
  }
  return Minimize(Trim(QuoteDfa(Minimize(Trim(decoded)))));
}

}  // namespace r1::grammar
