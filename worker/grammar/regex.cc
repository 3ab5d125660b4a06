#include "worker/grammar/regex.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/grammar/utf8_ranges.h"

namespace r1::grammar {
namespace {

struct Node {
  enum Kind { kSet, kConcat, kAlt, kRepeat, kStart, kEnd };
  explicit Node(Kind k) : kind(k) {}
  Kind kind;
  CodepointSet set;         // kSet
  std::vector<Node> kids;   // kConcat, kAlt, kRepeat (one kid)
  int64_t min = 0, max = 0;  // kRepeat; max < 0: unbounded
};

CodepointSet Digits() { return CodepointSet::Of('0', '9'); }
CodepointSet Word() {
  CodepointSet s = CodepointSet::Of('a', 'z');
  s.Add('A', 'Z');
  s.Add('0', '9');
  s.Add('_', '_');
  return s;
}
// ECMAScript's WhiteSpace and LineTerminator.
CodepointSet Space() {
  CodepointSet s = CodepointSet::Of('\t', '\r');
  for (uint32_t c : {0x20u, 0xA0u, 0x1680u, 0x2028u, 0x2029u, 0x202Fu, 0x205Fu, 0x3000u, 0xFEFFu})
    s.Add(c, c);
  s.Add(0x2000, 0x200A);
  return s;
}
// '.': anything but a line terminator.
CodepointSet Dot() {
  CodepointSet s = CodepointSet::Of('\n', '\n');
  s.Add('\r', '\r');
  s.Add(0x2028, 0x2029);
  return s.Complement();
}

class Parser {
 public:
  Parser(std::string_view p, int64_t max_repeat) : p_(p), max_repeat_(max_repeat) {}

  absl::StatusOr<Node> Parse() {
    R1_ASSIGN_OR_RETURN(Node n, ParseAlt());
    if (pos_ < p_.size()) return Error(absl::StrCat("unexpected '", std::string(1, p_[pos_]), "'"));
    return n;
  }

 private:
  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("pattern \"", std::string(p_), "\": ", std::string(what), " at offset ", pos_));
  }
  bool More() const { return pos_ < p_.size(); }
  char Peek() const { return p_[pos_]; }
  bool Eat(char c) {
    if (More() && Peek() == c) return ++pos_, true;
    return false;
  }

  // One code point of UTF-8 from the pattern.
  absl::StatusOr<uint32_t> NextCodepoint() {
    const uint8_t b = static_cast<uint8_t>(p_[pos_]);
    int n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (b >= 0x80 && b < 0xC0) return Error("invalid UTF-8");
    if (pos_ + n > p_.size()) return Error("invalid UTF-8");
    uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
    for (int i = 1; i < n; ++i) {
      const uint8_t c = static_cast<uint8_t>(p_[pos_ + i]);
      if ((c & 0xC0) != 0x80) return Error("invalid UTF-8");
      cp = (cp << 6) | (c & 0x3F);
    }
    pos_ += n;
    return cp;
  }

  absl::StatusOr<Node> ParseAlt() {
    Node alt(Node::kAlt);
    for (;;) {
      R1_ASSIGN_OR_RETURN(Node c, ParseConcat());
      alt.kids.push_back(std::move(c));
      if (!Eat('|')) break;
    }
    if (alt.kids.size() == 1) return std::move(alt.kids[0]);
    return alt;
  }

  absl::StatusOr<Node> ParseConcat() {
    Node cat(Node::kConcat);
    while (More() && Peek() != '|' && Peek() != ')') {
      R1_ASSIGN_OR_RETURN(Node atom, ParseAtom());
      R1_RETURN_IF_ERROR(ParseQuantifiers(&atom));
      cat.kids.push_back(std::move(atom));
    }
    return cat;
  }

  absl::Status ParseQuantifiers(Node* atom) {
    while (More()) {
      int64_t min = 0, max = 0;
      const char c = Peek();
      if (c == '*') min = 0, max = -1, ++pos_;
      else if (c == '+') min = 1, max = -1, ++pos_;
      else if (c == '?') min = 0, max = 1, ++pos_;
      else if (c == '{') R1_RETURN_IF_ERROR(ParseBraces(&min, &max));
      else return absl::OkStatus();
      if (atom->kind == Node::kStart || atom->kind == Node::kEnd)
        return Error("a quantifier on an anchor");
      Eat('?');  // lazy: the same strings
      Node rep(Node::kRepeat);
      rep.min = min;
      rep.max = max;
      rep.kids.push_back(std::move(*atom));
      *atom = std::move(rep);
    }
    return absl::OkStatus();
  }

  absl::Status ParseBraces(int64_t* min, int64_t* max) {
    ++pos_;  // '{'
    auto number = [&](int64_t* out) {
      const size_t start = pos_;
      *out = 0;
      while (More() && Peek() >= '0' && Peek() <= '9') {
        *out = std::min<int64_t>(*out * 10 + (Peek() - '0'), int64_t{1} << 40);
        ++pos_;
      }
      return pos_ > start;
    };
    if (!number(min)) return Error("'{' is not a quantifier (escape it as \\{)");
    *max = *min;
    if (Eat(',')) {
      if (!number(max)) *max = -1;
    }
    if (!Eat('}')) return Error("unterminated {n,m} quantifier");
    if (*max >= 0 && *max < *min) return Error("quantifier {n,m} with m < n");
    if (*min > max_repeat_ || *max > max_repeat_)
      return Error(absl::StrCat("repetition count above the limit of ", max_repeat_));
    return absl::OkStatus();
  }

  absl::StatusOr<Node> ParseAtom() {
    const char c = Peek();
    switch (c) {
      case '(': return ParseGroup();
      case '[': return ParseClass();
      case '.': ++pos_; return Set(Dot());
      case '^': ++pos_; return Node(Node::kStart);
      case '$': ++pos_; return Node(Node::kEnd);
      case '\\': {
        ++pos_;
        CodepointSet s;
        R1_RETURN_IF_ERROR(ParseEscape(/*in_class=*/false, &s));
        return Set(std::move(s));
      }
      case '*': case '+': case '?': case '{':
        return Error("a quantifier with nothing to repeat");
      case ']': case '}':
        return Error(absl::StrCat("unescaped '", std::string(1, c), "'"));
      default: {
        R1_ASSIGN_OR_RETURN(uint32_t cp, NextCodepoint());
        return Set(CodepointSet::Of(cp, cp));
      }
    }
  }

  static Node Set(CodepointSet s) {
    Node n(Node::kSet);
    n.set = std::move(s);
    return n;
  }

  absl::StatusOr<Node> ParseGroup() {
    ++pos_;  // '('
    if (Eat('?')) {
      if (Eat(':')) {
      } else if (More() && Peek() == '<' && pos_ + 1 < p_.size() && p_[pos_ + 1] != '=' &&
                 p_[pos_ + 1] != '!') {
        const size_t close = p_.find('>', pos_);
        if (close == std::string_view::npos) return Error("unterminated group name");
        pos_ = close + 1;
      } else {
        return Error("lookaround and inline flags are not supported");
      }
    }
    R1_ASSIGN_OR_RETURN(Node inner, ParseAlt());
    if (!Eat(')')) return Error("missing ')'");
    return inner;
  }

  absl::StatusOr<uint32_t> Hex(size_t digits) {
    if (pos_ + digits > p_.size()) return Error("short hex escape");
    uint32_t v = 0;
    for (size_t i = 0; i < digits; ++i) {
      const char h = p_[pos_ + i];
      const int d = h >= '0' && h <= '9' ? h - '0'
                    : h >= 'a' && h <= 'f' ? h - 'a' + 10
                    : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                            : -1;
      if (d < 0) return Error("bad hex digit in escape");
      v = v * 16 + static_cast<uint32_t>(d);
    }
    pos_ += digits;
    return v;
  }

  // After a backslash: the code points the escape stands for.
  absl::Status ParseEscape(bool in_class, CodepointSet* out) {
    if (!More()) return Error("pattern ends with '\\'");
    const char c = p_[pos_++];
    auto one = [&](uint32_t cp) {
      *out = CodepointSet::Of(cp, cp);
      return absl::OkStatus();
    };
    switch (c) {
      case 'd': *out = Digits(); return absl::OkStatus();
      case 'D': *out = Digits().Complement(); return absl::OkStatus();
      case 'w': *out = Word(); return absl::OkStatus();
      case 'W': *out = Word().Complement(); return absl::OkStatus();
      case 's': *out = Space(); return absl::OkStatus();
      case 'S': *out = Space().Complement(); return absl::OkStatus();
      case 't': return one('\t');
      case 'n': return one('\n');
      case 'r': return one('\r');
      case 'f': return one('\f');
      case 'v': return one('\v');
      case '0':
        if (More() && Peek() >= '0' && Peek() <= '9') return Error("octal escapes are not supported");
        return one(0);
      case 'x': {
        R1_ASSIGN_OR_RETURN(uint32_t v, Hex(2));
        return one(v);
      }
      case 'u': {
        if (Eat('{')) {
          const size_t close = p_.find('}', pos_);
          if (close == std::string_view::npos || close == pos_ || close - pos_ > 6)
            return Error("bad \\u{...} escape");
          R1_ASSIGN_OR_RETURN(uint32_t v, Hex(close - pos_));
          ++pos_;
          if (v > kMaxCodepoint) return Error("code point above U+10FFFF");
          return one(v);
        }
        R1_ASSIGN_OR_RETURN(uint32_t v, Hex(4));
        if (v >= 0xD800 && v <= 0xDFFF) return Error("surrogate escapes are not supported");
        return one(v);
      }
      case 'b':
        if (in_class) return one('\b');
        return Error("word boundaries (\\b) are not supported");
      case 'B': return Error("word boundaries (\\B) are not supported");
      case 'p': case 'P': return Error("Unicode property escapes (\\p{...}) are not supported");
      case 'k': return Error("named backreferences are not supported");
      case 'c': return Error("control escapes (\\cX) are not supported");
      default:
        if (c >= '1' && c <= '9') return Error("backreferences are not supported");
        if (std::string_view("^$\\.*+?()[]{}|/-").find(c) != std::string_view::npos) return one(c);
        return Error(absl::StrCat("unknown escape \\", std::string(1, c)));
    }
  }

  absl::StatusOr<Node> ParseClass() {
    ++pos_;  // '['
    const bool negate = Eat('^');
    CodepointSet set;
    while (More() && Peek() != ']') {
      CodepointSet item;
      R1_ASSIGN_OR_RETURN(bool single, ClassItem(&item));
      // A range a-b between two single characters; '-' before ']' is literal.
      if (single && More() && Peek() == '-' && pos_ + 1 < p_.size() && p_[pos_ + 1] != ']') {
        ++pos_;
        CodepointSet hi_item;
        R1_ASSIGN_OR_RETURN(bool hi_single, ClassItem(&hi_item));
        if (!hi_single) return Error("a class escape as a range end");
        const uint32_t lo = item.ranges()[0].first, hi = hi_item.ranges()[0].first;
        if (lo > hi) return Error("range out of order in character class");
        item = CodepointSet::Of(lo, hi);
      }
      set.Add(item);
    }
    if (!Eat(']')) return Error("missing ']'");
    return Set(negate ? set.Complement() : std::move(set));
  }

  // One class member; true when it is a single character (a possible range end).
  absl::StatusOr<bool> ClassItem(CodepointSet* out) {
    if (Eat('\\')) {
      const char c = More() ? Peek() : 0;
      R1_RETURN_IF_ERROR(ParseEscape(/*in_class=*/true, out));
      return std::string_view("dDwWsS").find(c) == std::string_view::npos;
    }
    R1_ASSIGN_OR_RETURN(uint32_t cp, NextCodepoint());
    *out = CodepointSet::Of(cp, cp);
    return true;
  }

  std::string_view p_;
  int64_t max_repeat_;
  size_t pos_ = 0;
};

Frag Build(Nfa& nfa, const Node& n) {
  switch (n.kind) {
    case Node::kSet: return CodepointFrag(nfa, n.set);
    case Node::kConcat: {
      std::vector<Frag> parts;
      for (const Node& k : n.kids) parts.push_back(Build(nfa, k));
      return nfa.Seq(parts);
    }
    case Node::kAlt: {
      std::vector<Frag> parts;
      for (const Node& k : n.kids) parts.push_back(Build(nfa, k));
      return nfa.Alt(parts);
    }
    case Node::kRepeat:
      return nfa.Repeat([&] { return Build(nfa, n.kids[0]); }, n.min, n.max);
    case Node::kStart:
    case Node::kEnd:
      break;  // removed before building
  }
  return nfa.Empty();
}

bool HasAnchor(const Node& n) {
  if (n.kind == Node::kStart || n.kind == Node::kEnd) return true;
  for (const Node& k : n.kids)
    if (HasAnchor(k)) return true;
  return false;
}

// Strips the anchors of one top-level alternative (descending into a group that is the whole
// alternative, as in ^(a|b)$) and reports which ends were anchored.
absl::StatusOr<Node> StripAnchors(Node n, bool* at_start, bool* at_end) {
  std::vector<Node> items;
  if (n.kind == Node::kConcat) items = std::move(n.kids);
  else items.push_back(std::move(n));
  size_t b = 0, e = items.size();
  while (b < e && items[b].kind == Node::kStart) *at_start = true, ++b;
  while (e > b && items[e - 1].kind == Node::kEnd) *at_end = true, --e;
  Node body(Node::kConcat);
  for (size_t i = b; i < e; ++i) {
    if (HasAnchor(items[i]))
      return absl::InvalidArgumentError(
          "'^' and '$' are supported only at the start and end of the pattern or of a "
          "top-level alternative");
    body.kids.push_back(std::move(items[i]));
  }
  return body;
}

}  // namespace

absl::StatusOr<Frag> CompileRegex(Nfa& nfa, std::string_view pattern, RegexMode mode,
                                  int64_t max_repeat) {
  Parser parser(pattern, max_repeat);
  R1_ASSIGN_OR_RETURN(Node root, parser.Parse());
  // A group around the whole pattern, (^a|b$), is one alternative of the top level.
  std::vector<Node> alts;
  if (root.kind == Node::kAlt) alts = std::move(root.kids);
  else alts.push_back(std::move(root));
  std::vector<Frag> branches;
  for (Node& alt : alts) {
    bool at_start = false, at_end = false;
    auto body = StripAnchors(std::move(alt), &at_start, &at_end);
    if (!body.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("pattern \"", std::string(pattern), "\": ", std::string(body.status().message())));
    std::vector<Frag> parts;
    const bool search = mode == RegexMode::kSearch;
    if (search && !at_start) parts.push_back(nfa.Star(CodepointFrag(nfa, CodepointSet::All())));
    parts.push_back(Build(nfa, *body));
    if (search && !at_end) parts.push_back(nfa.Star(CodepointFrag(nfa, CodepointSet::All())));
    branches.push_back(nfa.Seq(parts));
  }
  return branches.size() == 1 ? branches[0] : nfa.Alt(branches);
}

}  // namespace r1::grammar
