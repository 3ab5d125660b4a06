#include "worker/grammar/json_number.h"

#include <charconv>
#include <deque>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace r1::grammar {
namespace {

constexpr int kBoundedSignificantDigits = 15;

Decimal Normalized(bool neg, std::string digits, int point) {
  // digits with the decimal point after `point` digits (point may be <= 0 or > size).
  if (point <= 0) {
    digits.insert(0, static_cast<size_t>(-point) + 1, '0');
    point = 1;
  }
  if (point > static_cast<int>(digits.size())) digits.append(point - digits.size(), '0');
  Decimal d;
  d.int_digits = digits.substr(0, point);
  d.frac_digits = digits.substr(point);
  const size_t nz = d.int_digits.find_first_not_of('0');
  d.int_digits = nz == std::string::npos ? "0" : d.int_digits.substr(nz);
  while (!d.frac_digits.empty() && d.frac_digits.back() == '0') d.frac_digits.pop_back();
  d.neg = neg && !(d.int_digits == "0" && d.frac_digits.empty());
  return d;
}

enum Rel : int8_t { kLt = -1, kEq = 0, kGt = 1 };

// Where the number's text is.
enum Phase : uint8_t { kStart, kMinus, kZero, kInt, kDot, kFrac, kE, kESign, kExp };

struct State {
  uint8_t phase = kStart;
  bool neg = false;
  bool nonzero = false;  // a nonzero digit seen
  uint8_t nint = 0, nfrac = 0, nexp = 0, nsig = 0;
  int8_t rel[2] = {kEq, kEq};        // |x| so far against |lo|, |hi| (see Compare)
  bool decided[2] = {false, false};  // rel is final whatever digits follow

  uint64_t Key() const {
    // Bit fields; the digit counts are bounded by the options (at most 100, see options.h).
    return uint64_t{phase} | uint64_t{neg} << 4 | uint64_t{nonzero} << 5 | uint64_t{nint} << 8 |
           uint64_t{nfrac} << 16 | uint64_t{nexp} << 24 | uint64_t{nsig} << 32 |
           uint64_t(rel[0] + 1) << 40 | uint64_t(rel[1] + 1) << 42 |
           uint64_t{decided[0]} << 44 | uint64_t{decided[1]} << 45;
  }
};

class Builder {
 public:
  explicit Builder(const NumberSpec& spec) : spec_(spec) {
    bounded_ = spec.lo || spec.hi;
    bounds_[0] = spec.lo ? &*spec.lo : nullptr;
    bounds_[1] = spec.hi ? &*spec.hi : nullptr;
  }

  Dfa Build() {
    Dfa out;
    absl::flat_hash_map<uint64_t, int32_t> ids;
    std::deque<State> todo;
    auto id_of = [&](const State& s) {
      auto [it, fresh] = ids.try_emplace(s.Key(), static_cast<int32_t>(out.states.size()));
      if (fresh) {
        out.states.emplace_back();
        todo.push_back(s);
      }
      return it->second;
    };
    id_of(State{});
    while (!todo.empty()) {
      const State s = todo.front();
      todo.pop_front();
      const int32_t self = ids[s.Key()];
      out.states[self].accept = Accepts(s);
      for (int b : {'+', '-', '.', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'E', 'e'}) {
        State n = s;
        if (!Step(&n, static_cast<char>(b))) continue;
        Forget(&n);
        const int32_t to = id_of(n);
        auto& v = out.states[self].bytes;
        if (!v.empty() && v.back().to == to && v.back().hi + 1 == b) v.back().hi = b;
        else v.push_back({static_cast<uint8_t>(b), static_cast<uint8_t>(b), to});
      }
    }
    return Minimize(Trim(out));
  }

 private:
  bool Exponent() const { return !spec_.integer && !bounded_; }

  // Clears what no longer matters, so that states differing only there are one state (the
  // enumeration stays small: a few hundred states before minimisation, not thousands).
  void Forget(State* s) const {
    if (s->phase != kZero && s->phase != kInt) s->nint = 0;  // counted while reading it
    if (s->phase >= kE) s->nfrac = 0;
    if (!bounded_ && !s->neg) s->nonzero = false;  // only "no negative zero" needs it then
  }

  // Feeds one digit of the integer part (d is '0'..'9') to the bound comparisons.
  void IntDigit(State* s, char d) const {
    for (int i = 0; i < 2; ++i) {
      if (!bounds_[i] || s->decided[i] || s->rel[i] != kEq) continue;
      const std::string& c = bounds_[i]->value.int_digits;
      // Only a prefix as long as the bound's integer part compares digit by digit.
      if (s->nint < c.size()) s->rel[i] = d < c[s->nint] ? kLt : d > c[s->nint] ? kGt : kEq;
    }
  }

  // At the end of the integer part: the final comparison of the integer parts.
  void EndInt(State* s) const {
    for (int i = 0; i < 2; ++i) {
      if (!bounds_[i] || s->decided[i]) continue;
      const size_t len = bounds_[i]->value.int_digits.size();
      if (s->nint < len) s->rel[i] = kLt;
      else if (s->nint > len) s->rel[i] = kGt;
      s->decided[i] = s->rel[i] != kEq;
    }
  }

  void FracDigit(State* s, char d) const {
    for (int i = 0; i < 2; ++i) {
      if (!bounds_[i] || s->decided[i]) continue;
      const std::string& c = bounds_[i]->value.frac_digits;
      const char cd = s->nfrac < c.size() ? c[s->nfrac] : '0';
      if (d != cd) s->rel[i] = d < cd ? kLt : kGt, s->decided[i] = true;
    }
  }

  bool Digit(State* s, char d, uint8_t* count, int limit) const {
    if (*count >= limit) return false;
    ++*count;
    if (d != '0') s->nonzero = true;
    if (bounded_ && !spec_.integer && s->nonzero) {
      if (s->nsig >= kBoundedSignificantDigits) return false;
      ++s->nsig;
    }
    return true;
  }

  bool Step(State* s, char b) const {
    const bool digit = b >= '0' && b <= '9';
    switch (s->phase) {
      case kStart:
      case kMinus:
        if (b == '-' && s->phase == kStart) {
          s->phase = kMinus, s->neg = true;
          return true;
        }
        if (!digit) return false;
        IntDigit(s, b);
        if (!Digit(s, b, &s->nint, spec_.max_integer_digits)) return false;
        s->phase = b == '0' ? kZero : kInt;
        return true;
      case kZero:
      case kInt:
        if (digit && s->phase == kInt) {
          IntDigit(s, b);
          return Digit(s, b, &s->nint, spec_.max_integer_digits);
        }
        if (b == '.' && !spec_.integer && spec_.max_fraction_digits > 0) {
          EndInt(s);
          s->phase = kDot;
          return true;
        }
        if ((b == 'e' || b == 'E') && Exponent()) {
          EndInt(s);
          s->phase = kE;
          return true;
        }
        return false;
      case kDot:
      case kFrac:
        if (digit) {
          FracDigit(s, b);
          if (!Digit(s, b, &s->nfrac, spec_.max_fraction_digits)) return false;
          s->phase = kFrac;
          return true;
        }
        if ((b == 'e' || b == 'E') && s->phase == kFrac && Exponent()) {
          s->phase = kE;
          return true;
        }
        return false;
      case kE:
        if (b == '+' || b == '-') {
          s->phase = kESign;
          return true;
        }
        [[fallthrough]];
      case kESign:
      case kExp:
        if (!digit || s->nexp >= spec_.max_exponent_digits) return false;
        ++s->nexp;
        s->phase = kExp;
        return true;
    }
    return false;
  }

  // |x| against |bound| for a complete text.
  Rel MagnitudeRel(const State& s, int i) const {
    State t = s;
    if (t.phase == kZero || t.phase == kInt) EndInt(&t);
    if (t.decided[i] || t.rel[i] != kEq) return static_cast<Rel>(t.rel[i]);
    // Equal so far: the bound is bigger if it has fraction digits left (none are trailing 0s).
    return t.nfrac < bounds_[i]->value.frac_digits.size() ? kLt : kEq;
  }

  // x against bound i (signed).
  Rel SignedRel(const State& s, int i) const {
    const Decimal& c = bounds_[i]->value;
    const int sx = !s.nonzero ? 0 : s.neg ? -1 : 1;
    const bool czero = c.int_digits == "0" && c.frac_digits.empty();
    const int sc = czero ? 0 : c.neg ? -1 : 1;
    if (sx != sc) return sx < sc ? kLt : kGt;
    if (sx == 0) return kEq;
    const Rel m = MagnitudeRel(s, i);
    return sx > 0 ? m : static_cast<Rel>(-m);
  }

  bool Accepts(const State& s) const {
    const bool complete = s.phase == kZero || s.phase == kInt || s.phase == kFrac || s.phase == kExp;
    if (!complete) return false;
    if (s.neg && !s.nonzero) return false;  // no negative zero
    if (bounds_[0]) {
      const Rel r = SignedRel(s, 0);
      if (r == kLt || (r == kEq && bounds_[0]->exclusive)) return false;
    }
    if (bounds_[1]) {
      const Rel r = SignedRel(s, 1);
      if (r == kGt || (r == kEq && bounds_[1]->exclusive)) return false;
    }
    return true;
  }

  const NumberSpec& spec_;
  bool bounded_ = false;
  const NumberBound* bounds_[2];
};

}  // namespace

absl::StatusOr<Decimal> DecimalOf(const boost::json::value& v) {
  char buf[64];
  std::string_view text;
  if (v.is_int64()) {
    auto r = std::to_chars(buf, buf + sizeof buf, v.get_int64());
    text = std::string_view(buf, r.ptr - buf);
  } else if (v.is_uint64()) {
    auto r = std::to_chars(buf, buf + sizeof buf, v.get_uint64());
    text = std::string_view(buf, r.ptr - buf);
  } else if (v.is_double()) {
    auto r = std::to_chars(buf, buf + sizeof buf, v.get_double(), std::chars_format::scientific);
    text = std::string_view(buf, r.ptr - buf);
  } else {
    return absl::InvalidArgumentError("not a number");
  }
  // [-]D[.DDD][e[+-]X]
  bool neg = false;
  if (!text.empty() && text[0] == '-') neg = true, text.remove_prefix(1);
  std::string digits;
  int point = -1, exp = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] != 'e'; ++i) {
    if (text[i] == '.') point = static_cast<int>(digits.size());
    else digits.push_back(text[i]);
  }
  if (point < 0) point = static_cast<int>(digits.size());
  if (i < text.size()) {
    std::string_view e = text.substr(i + 1);
    if (!e.empty() && e[0] == '+') e.remove_prefix(1);
    std::from_chars(e.data(), e.data() + e.size(), exp);
  }
  return Normalized(neg, digits, point + exp);
}

int CompareDecimal(const Decimal& a, const Decimal& b) {
  auto is_zero = [](const Decimal& d) { return d.int_digits == "0" && d.frac_digits.empty(); };
  const int sa = is_zero(a) ? 0 : a.neg ? -1 : 1, sb = is_zero(b) ? 0 : b.neg ? -1 : 1;
  if (sa != sb) return sa < sb ? -1 : 1;
  if (sa == 0) return 0;
  int m = 0;
  if (a.int_digits.size() != b.int_digits.size()) {
    m = a.int_digits.size() < b.int_digits.size() ? -1 : 1;
  } else if (a.int_digits != b.int_digits) {
    m = a.int_digits < b.int_digits ? -1 : 1;
  } else if (a.frac_digits != b.frac_digits) {
    m = a.frac_digits < b.frac_digits ? -1 : 1;  // no trailing zeros: lexicographic works
  }
  return sa * m;
}

Dfa JsonNumberDfa(const NumberSpec& spec) { return Builder(spec).Build(); }

}  // namespace r1::grammar
