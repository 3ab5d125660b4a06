#include "worker/grammar/schema_compiler.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/grammar/json_number.h"
#include "worker/grammar/json_pointer.h"
#include "worker/grammar/json_string.h"
#include "worker/grammar/json_text.h"
#include "worker/grammar/schema_keywords.h"

namespace r1::grammar {
namespace {

namespace json = boost::json;

// An object member as the wiring sees it: the key's text and the value, both already built.
struct Member {
  Frag key;
  Frag value;
  bool required = false;
};

// Inlining an item schema more often than this many NFA states' worth makes it a rule.
constexpr size_t kInlineBudget = 4096;

class SchemaCompiler {
 public:
  SchemaCompiler(const json::value& doc, const GrammarOptions& opt) : doc_(doc), opt_(opt) {}

  absl::StatusOr<GrammarRules> CompileSchema() {
    colors_[""] = kGrey;
    R1_RETURN_IF_ERROR(FindCycles(doc_, ""));
    const int32_t root = NewRule(Rule::kRoot, &doc_, "");
    return Finish(root);
  }

  absl::StatusOr<GrammarRules> CompileAnyObject() { return Finish(NewRule(Rule::kRootAnyObject)); }

 private:
  enum Color { kWhite = 0, kGrey, kBlack };
  struct Rule {
    enum Kind { kRoot, kRootAnyObject, kSchema, kAnyValue } kind;
    const json::value* schema = nullptr;
    std::string ptr;
    std::unique_ptr<Nfa> nfa;
    Frag frag{};
  };

  size_t MaxStates() const { return static_cast<size_t>(opt_.max_states); }

  int32_t NewRule(Rule::Kind kind, const json::value* schema = nullptr, std::string ptr = "") {
    rules_.push_back(Rule{kind, schema, std::move(ptr), std::make_unique<Nfa>(MaxStates()), {}});
    return static_cast<int32_t>(rules_.size() - 1);
  }

  int32_t RuleFor(const json::value* schema, const std::string& ptr) {
    auto it = rule_of_ptr_.find(ptr);
    if (it != rule_of_ptr_.end()) return it->second;
    const int32_t r = NewRule(Rule::kSchema, schema, ptr);
    rule_of_ptr_[ptr] = r;
    return r;
  }

  int32_t AnyRule() {
    if (any_rule_ < 0) any_rule_ = NewRule(Rule::kAnyValue);
    return any_rule_;
  }

  // Builds every rule's body (bodies may create more rules), then makes each a minimal DFA.
  absl::StatusOr<GrammarRules> Finish(int32_t root) {
    for (size_t r = 0; r < rules_.size(); ++r) {
      // Copies: building a body may add rules, which moves the vector's elements.
      Nfa& nfa = *rules_[r].nfa;
      const Rule::Kind kind = rules_[r].kind;
      const json::value* schema = rules_[r].schema;
      const std::string ptr = rules_[r].ptr;
      Frag body;
      if (kind == Rule::kRoot) {
        R1_ASSIGN_OR_RETURN(Frag value, Schema(nfa, *schema, ptr));
        body = nfa.Seq({Ws(nfa), value});
      } else if (kind == Rule::kRootAnyObject) {
        body = nfa.Seq({Ws(nfa), AnyObject(nfa)});
      } else if (kind == Rule::kSchema) {
        R1_ASSIGN_OR_RETURN(body, Schema(nfa, *schema, ptr));
      } else {
        body = AnyValue(nfa);
      }
      rules_[r].frag = body;
      if (nfa.overflow()) return TooLarge();
    }
    GrammarRules out;
    out.root = root;
    for (Rule& r : rules_) {
      auto dfa = Determinize(*r.nfa, r.frag, MaxStates());
      if (!dfa.ok()) return TooLarge();
      out.rules.push_back(Minimize(Trim(*dfa)));
      r.nfa.reset();
    }
    return out;
  }

  absl::Status TooLarge() const {
    return absl::ResourceExhaustedError(absl::StrCat(
        "json_schema: the grammar needs more than ", opt_.max_states,
        " automaton states (lengths, item counts or repetitions too large for the limit)"));
  }

  // ---- Pass 1: which $ref targets lie on a reference cycle (they become rules).

  absl::Status FindCycles(const json::value& s, const std::string& ptr) {
    if (!s.is_object()) return absl::OkStatus();
    const json::object& o = s.get_object();
    for (const auto& [sub, sub_ptr] : Subschemas(o, ptr)) R1_RETURN_IF_ERROR(FindCycles(*sub, sub_ptr));
    if (const json::value* ref = o.if_contains("$ref")) {
      if (!ref->is_string()) return KeywordError(ptr, "$ref", "must be a string");
      auto target = ResolveRef(doc_, ref->get_string());
      if (!target.ok()) return KeywordError(ptr, "$ref", std::string(target.status().message()));
      Color& c = colors_[target->pointer];
      if (c == kGrey) {
        recursive_.insert(target->pointer);
      } else if (c == kWhite) {
        c = kGrey;
        R1_RETURN_IF_ERROR(FindCycles(*target->value, target->pointer));
        colors_[target->pointer] = kBlack;
      }
    }
    return absl::OkStatus();
  }

  static std::vector<std::pair<const json::value*, std::string>> Subschemas(
      const json::object& o, const std::string& ptr) {
    std::vector<std::pair<const json::value*, std::string>> out;
    auto each = [&](std::string_view key) {
      const json::value* v = o.if_contains(key);
      if (!v) return;
      const std::string p = PointerChild(ptr, key);
      if (v->is_array()) {
        for (size_t i = 0; i < v->get_array().size(); ++i)
          out.push_back({&v->get_array()[i], PointerChild(p, absl::StrCat(i))});
      } else if (v->is_object() && key == "properties") {
        for (const auto& kv : v->get_object()) out.push_back({&kv.value(), PointerChild(p, kv.key())});
      } else {
        out.push_back({v, p});
      }
    };
    for (std::string_view k : {"properties", "additionalProperties", "items", "prefixItems",
                               "anyOf", "oneOf"})
      each(k);
    return out;
  }

  // ---- Pass 2: schemas to NFA fragments.

  absl::StatusOr<Frag> Schema(Nfa& nfa, const json::value& s, const std::string& ptr) {
    if (s.is_bool()) return s.get_bool() ? nfa.Call(AnyRule()) : nfa.Nothing();
    if (!s.is_object())
      return absl::InvalidArgumentError(absl::StrCat(
          "json_schema: the schema at ", PointerText(ptr), " is not an object or a boolean"));
    const json::object& o = s.get_object();
    R1_RETURN_IF_ERROR(CheckKeywords(o, ptr));
    if (o.contains("$ref")) return Ref(nfa, o, ptr);
    if (o.contains("enum") || o.contains("const")) return EnumConst(nfa, o, ptr);
    if (o.contains("anyOf") || o.contains("oneOf")) return Alternatives(nfa, o, ptr);
    R1_ASSIGN_OR_RETURN(TypeSet types, SchemaTypes(o, ptr));
    if (types == kAnyType && !o.contains("type")) return nfa.Call(AnyRule());
    if (types & kNumber) types &= ~kInteger;  // numbers include the integers
    std::vector<Frag> branches;
    for (TypeSet t = 1; t <= kObject; t <<= 1) {
      if (!(types & t)) continue;
      R1_ASSIGN_OR_RETURN(Frag f, Typed(nfa, t, o, ptr));
      branches.push_back(f);
    }
    return branches.size() == 1 ? branches[0] : nfa.Alt(branches);
  }

  absl::Status OnlyAnnotationsBeside(const json::object& o, std::string_view keyword,
                                     const std::string& ptr) {
    for (const auto& kv : o) {
      if (kv.key() == keyword || IsAnnotation(kv.key())) continue;
      return KeywordError(ptr, std::string(kv.key()), "is not supported next to \"" + std::string(keyword) + "\"");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Frag> Ref(Nfa& nfa, const json::object& o, const std::string& ptr) {
    R1_RETURN_IF_ERROR(OnlyAnnotationsBeside(o, "$ref", ptr));
    const json::value& ref = o.at("$ref");
    if (!ref.is_string()) return KeywordError(ptr, "$ref", "must be a string");
    auto target = ResolveRef(doc_, ref.get_string());
    if (!target.ok()) return KeywordError(ptr, "$ref", std::string(target.status().message()));
    const std::string& tp = target->pointer;
    if (recursive_.count(tp) || inlining_.count(tp)) return nfa.Call(RuleFor(target->value, tp));
    inlining_.insert(tp);
    auto f = Schema(nfa, *target->value, tp);
    inlining_.erase(tp);
    return f;
  }

  absl::StatusOr<Frag> Alternatives(Nfa& nfa, const json::object& o, const std::string& ptr) {
    const std::string_view key = o.contains("anyOf") ? "anyOf" : "oneOf";
    R1_RETURN_IF_ERROR(OnlyAnnotationsBeside(o, key, ptr));
    const json::value& list = o.at(key);
    if (!list.is_array() || list.get_array().empty())
      return KeywordError(ptr, key, "must be a non-empty array of schemas");
    std::vector<Frag> alts;
    const std::string p = PointerChild(ptr, key);
    for (size_t i = 0; i < list.get_array().size(); ++i) {
      R1_ASSIGN_OR_RETURN(Frag f, Schema(nfa, list.get_array()[i], PointerChild(p, absl::StrCat(i))));
      alts.push_back(f);
    }
    if (key == "oneOf") R1_RETURN_IF_ERROR(CheckDisjoint(nfa, alts, ptr));
    return nfa.Alt(alts);
  }

  // oneOf is generated as anyOf, so a text must not fit two branches. Branches without calls
  // are checked pairwise; texts of one value spelled differently by two branches (another
  // property order) are not caught, and branches with calls are not checked.
  absl::Status CheckDisjoint(const Nfa& nfa, const std::vector<Frag>& alts, const std::string& ptr) {
    std::vector<std::optional<Dfa>> dfas;
    for (const Frag& f : alts) {
      auto d = Determinize(nfa, f, MaxStates());
      if (!d.ok()) return TooLarge();
      if (d->HasCalls()) dfas.emplace_back();
      else dfas.emplace_back(Trim(*d));
    }
    for (size_t i = 0; i < dfas.size(); ++i)
      for (size_t j = i + 1; j < dfas.size(); ++j) {
        if (!dfas[i] || !dfas[j] || Intersect(*dfas[i], *dfas[j]).Empty()) continue;
        return KeywordError(ptr, "oneOf",
                            absl::StrCat("branches ", i, " and ", j, " accept the same text, so an "
                                         "output could match both; use anyOf or make them exclusive"));
      }
    return absl::OkStatus();
  }

  absl::StatusOr<Frag> EnumConst(Nfa& nfa, const json::object& o, const std::string& ptr) {
    std::vector<const json::value*> values;
    if (const json::value* e = o.if_contains("enum")) {
      if (!e->is_array() || e->get_array().empty())
        return KeywordError(ptr, "enum", "must be a non-empty array");
      for (const json::value& v : e->get_array()) values.push_back(&v);
    }
    if (const json::value* c = o.if_contains("const")) {
      if (values.empty()) {
        values.push_back(c);
      } else {
        const std::string want = CanonicalJson(*c);
        std::erase_if(values, [&](const json::value* v) { return CanonicalJson(*v) != want; });
      }
    }
    if (o.contains("type")) {
      R1_ASSIGN_OR_RETURN(TypeSet types, SchemaTypes(o, ptr));
      std::erase_if(values, [&](const json::value* v) { return !ValueHasType(*v, types); });
    }
    const std::string_view key = o.contains("enum") ? "enum" : "const";
    // Other constraints beside enum/const: the literals must satisfy them too.
    json::object rest;
    for (const auto& kv : o)
      if (kv.key() != "enum" && kv.key() != "const" && kv.key() != "type" && !IsAnnotation(kv.key()))
        rest[kv.key()] = kv.value();
    Nfa lit_nfa(MaxStates());
    std::vector<Frag> lits;
    for (const json::value* v : values) lits.push_back(lit_nfa.Literal(CanonicalJson(*v)));
    auto literals = Determinize(lit_nfa, lit_nfa.Alt(lits), MaxStates());
    if (!literals.ok()) return TooLarge();
    Dfa allowed = Trim(*literals);
    if (!rest.empty()) {
      if (o.contains("type")) rest["type"] = o.at("type");
      Nfa rest_nfa(MaxStates());
      R1_ASSIGN_OR_RETURN(Frag rf, Schema(rest_nfa, json::value(rest), ptr));
      auto rest_dfa = Determinize(rest_nfa, rf, MaxStates());
      if (!rest_dfa.ok()) return TooLarge();
      if (rest_dfa->HasCalls())
        return KeywordError(ptr, key, "is supported beside other keywords only when they need no "
                                      "recursion (no free-form values such as {} or "
                                      "additionalProperties: true, no recursive $ref)");
      allowed = Intersect(allowed, *rest_dfa);
    }
    if (allowed.Empty()) return KeywordError(ptr, key, "no value satisfies the schema");
    return Embed(nfa, allowed);
  }

  absl::StatusOr<Frag> Typed(Nfa& nfa, TypeSet t, const json::object& o, const std::string& ptr) {
    switch (t) {
      case kNull: return nfa.Literal("null");
      case kBoolean: return nfa.Alt({nfa.Literal("true"), nfa.Literal("false")});
      case kInteger: return Number(nfa, /*integer=*/true, o, ptr);
      case kNumber: return Number(nfa, /*integer=*/false, o, ptr);
      case kString: return String(nfa, o, ptr);
      case kArray: return Array(nfa, o, ptr);
      default: return Object(nfa, o, ptr);
    }
  }

  // The stricter of an inclusive and an exclusive bound keyword.
  absl::StatusOr<std::optional<NumberBound>> Bound(const json::object& o, std::string_view incl,
                                                   std::string_view excl, bool lower,
                                                   const std::string& ptr) {
    std::optional<NumberBound> out;
    for (std::string_view key : {incl, excl}) {
      const json::value* v = o.if_contains(key);
      if (!v) continue;
      if (v->is_bool())
        return KeywordError(ptr, key, "must be a number (the boolean form of draft 4 is not supported)");
      auto d = DecimalOf(*v);
      if (!d.ok()) return KeywordError(ptr, key, "must be a number");
      NumberBound b{*d, key == excl};
      if (!out) {
        out = b;
        continue;
      }
      const int c = CompareDecimal(b.value, out->value);
      if ((lower ? c > 0 : c < 0) || (c == 0 && b.exclusive)) out = b;
    }
    return out;
  }

  absl::StatusOr<Frag> Number(Nfa& nfa, bool integer, const json::object& o, const std::string& ptr) {
    NumberSpec spec;
    spec.integer = integer;
    R1_ASSIGN_OR_RETURN(spec.lo, Bound(o, "minimum", "exclusiveMinimum", true, ptr));
    R1_ASSIGN_OR_RETURN(spec.hi, Bound(o, "maximum", "exclusiveMaximum", false, ptr));
    spec.max_integer_digits = static_cast<int>(opt_.max_integer_digits);
    spec.max_fraction_digits = static_cast<int>(opt_.max_fraction_digits);
    spec.max_exponent_digits = static_cast<int>(opt_.max_exponent_digits);
    const bool plain = !spec.lo && !spec.hi;
    std::optional<Dfa>& cached = plain_number_[integer];
    Dfa d = plain && cached ? *cached : JsonNumberDfa(spec);
    if (plain) cached = d;
    if (d.Empty())
      return KeywordError(ptr, spec.lo ? (o.contains("minimum") ? "minimum" : "exclusiveMinimum")
                                       : (o.contains("maximum") ? "maximum" : "exclusiveMaximum"),
                          absl::StrCat("no ", integer ? "integer" : "number",
                                       " satisfies the bounds (with at most ",
                                       opt_.max_integer_digits, " integer digits)"));
    return Embed(nfa, d);
  }

  absl::StatusOr<Frag> String(Nfa& nfa, const json::object& o, const std::string& ptr) {
    StringSpec spec;
    R1_ASSIGN_OR_RETURN(auto min_len, CountKeyword(o, "minLength", ptr));
    R1_ASSIGN_OR_RETURN(auto max_len, CountKeyword(o, "maxLength", ptr));
    if (min_len) spec.min_length = *min_len;
    if (max_len) spec.max_length = *max_len;
    if (max_len && *max_len < spec.min_length)
      return KeywordError(ptr, "maxLength", "is below minLength");
    if (const json::value* p = o.if_contains("pattern")) {
      if (!p->is_string()) return KeywordError(ptr, "pattern", "must be a string");
      spec.pattern = std::string(p->get_string());
    }
    R1_ASSIGN_OR_RETURN(const Dfa* d, StringDfa(spec, ptr));
    return Embed(nfa, *d);
  }

  absl::StatusOr<const Dfa*> StringDfa(const StringSpec& spec, const std::string& ptr) {
    auto key = std::make_tuple(spec.min_length, spec.max_length, spec.pattern.value_or(""),
                               spec.pattern.has_value());
    auto it = strings_.find(key);
    if (it != strings_.end()) return &it->second;
    auto d = JsonStringDfa(spec, {MaxStates(), opt_.max_repeat});
    if (!d.ok()) {
      if (absl::IsResourceExhausted(d.status())) return TooLarge();
      return KeywordError(ptr, "pattern", std::string(d.status().message()));
    }
    if (d->Empty())
      return KeywordError(ptr, spec.pattern ? "pattern" : "minLength",
                          "no string satisfies the pattern and length bounds");
    return &strings_.emplace(key, std::move(*d)).first->second;
  }

  Frag PlainString(Nfa& nfa) { return Embed(nfa, **StringDfa(StringSpec{}, "")); }

  absl::StatusOr<Frag> Object(Nfa& nfa, const json::object& o, const std::string& ptr) {
    const json::value* props = o.if_contains("properties");
    if (props && !props->is_object()) return KeywordError(ptr, "properties", "must be an object");
    std::vector<std::string> required;
    if (const json::value* r = o.if_contains("required")) {
      if (!r->is_array()) return KeywordError(ptr, "required", "must be an array of strings");
      for (const json::value& name : r->get_array()) {
        if (!name.is_string()) return KeywordError(ptr, "required", "must be an array of strings");
        required.emplace_back(name.get_string());
      }
    }
    const json::value* addl = o.if_contains("additionalProperties");
    if (addl && !addl->is_bool() && !addl->is_object())
      return KeywordError(ptr, "additionalProperties", "must be a boolean or a schema");
    const bool listed = props && !props->get_object().empty();
    // The schema of properties not listed; nullptr when none may be generated.
    const json::value* extra = nullptr;
    static const json::value kTrue(true);
    if (addl) extra = addl->is_bool() && !addl->get_bool() ? nullptr : addl;
    else if (!opt_.strict_properties || !listed) extra = &kTrue;

    auto is_required = [&](std::string_view name) {
      return std::find(required.begin(), required.end(), name) != required.end();
    };
    std::vector<Member> members;
    std::vector<std::string> names;
    const std::string props_ptr = PointerChild(ptr, "properties");
    if (props) {
      for (const auto& kv : props->get_object()) {
        R1_ASSIGN_OR_RETURN(Frag value, Schema(nfa, kv.value(), PointerChild(props_ptr, kv.key())));
        members.push_back({nfa.Literal(QuoteJsonString(kv.key())), value, is_required(kv.key())});
        names.emplace_back(kv.key());
      }
    }
    // Required names the schema does not list take the schema of additional properties.
    for (const std::string& name : required) {
      if (std::find(names.begin(), names.end(), name) != names.end()) continue;
      if (!extra)
        return KeywordError(ptr, "required", absl::StrCat("\"", name, "\" is required but not "
                                                          "allowed by properties/additionalProperties"));
      R1_ASSIGN_OR_RETURN(Frag value, Schema(nfa, *extra, PointerChild(ptr, "additionalProperties")));
      members.push_back({nfa.Literal(QuoteJsonString(name)), value, true});
      names.push_back(name);
    }
    std::optional<Member> extra_member;
    if (extra) {
      R1_ASSIGN_OR_RETURN(Frag key, OtherKey(nfa, names));
      R1_ASSIGN_OR_RETURN(Frag value, Schema(nfa, *extra, PointerChild(ptr, "additionalProperties")));
      extra_member = Member{key, value, false};
    }
    return WireObject(nfa, members, extra_member);
  }

  // A key that is none of `names` (each string has one spelling, see json_text.h).
  absl::StatusOr<Frag> OtherKey(Nfa& nfa, const std::vector<std::string>& names) {
    if (names.empty()) return PlainString(nfa);
    Nfa names_nfa(MaxStates());
    std::vector<Frag> lits;
    for (const std::string& n : names) lits.push_back(names_nfa.Literal(QuoteJsonString(n)));
    auto names_dfa = Determinize(names_nfa, names_nfa.Alt(lits), MaxStates());
    if (!names_dfa.ok()) return TooLarge();
    R1_ASSIGN_OR_RETURN(const Dfa* any_key, StringDfa(StringSpec{}, ""));
    return Embed(nfa, Minimize(Subtract(*any_key, *names_dfa)));
  }

  // { ws (member (, ws member)*)? } where member = key ws : ws value ws, listed members in
  // order (the optional ones may be skipped), then any number of extra members. Each member is
  // built once: "no member yet" (N) and "some member" (S) states both lead into it, the latter
  // through a comma.
  Frag WireObject(Nfa& nfa, const std::vector<Member>& members, const std::optional<Member>& extra) {
    const Frag open = nfa.Seq({nfa.Literal("{"), Ws(nfa)});
    int32_t n_state = open.out;
    int32_t s_state = nfa.NewState();
    auto member = [&](const Member& m, int32_t from_none, int32_t from_some) {
      const int32_t in = nfa.NewState();
      nfa.AddEps(from_none, in);
      const Frag comma = nfa.Seq({nfa.Literal(","), Ws(nfa)});
      nfa.AddEps(from_some, comma.in);
      nfa.AddEps(comma.out, in);
      const Frag body = nfa.Seq({m.key, Ws(nfa), nfa.Literal(":"), Ws(nfa), m.value, Ws(nfa)});
      nfa.AddEps(in, body.in);
      return body.out;
    };
    for (const Member& m : members) {
      const int32_t after = member(m, n_state, s_state);
      const int32_t next_s = nfa.NewState();
      nfa.AddEps(after, next_s);
      if (!m.required) {
        const int32_t next_n = nfa.NewState();
        nfa.AddEps(n_state, next_n);
        nfa.AddEps(s_state, next_s);
        n_state = next_n;
      } else {
        n_state = nfa.NewState();  // unreachable: a required member was skipped
      }
      s_state = next_s;
    }
    if (extra) {
      const int32_t after = member(*extra, n_state, s_state);
      nfa.AddEps(after, s_state);
    }
    const Frag close = nfa.Literal("}");
    nfa.AddEps(n_state, close.in);
    nfa.AddEps(s_state, close.in);
    return {open.in, close.out};
  }

  absl::StatusOr<Frag> Array(Nfa& nfa, const json::object& o, const std::string& ptr) {
    std::vector<const json::value*> prefix;
    std::vector<std::string> prefix_ptr;
    if (const json::value* p = o.if_contains("prefixItems")) {
      if (!p->is_array()) return KeywordError(ptr, "prefixItems", "must be an array of schemas");
      for (size_t i = 0; i < p->get_array().size(); ++i) {
        prefix.push_back(&p->get_array()[i]);
        prefix_ptr.push_back(PointerChild(PointerChild(ptr, "prefixItems"), absl::StrCat(i)));
      }
    }
    static const json::value kTrue(true);
    const json::value* items = o.if_contains("items");
    if (!items) items = &kTrue;
    if (!items->is_bool() && !items->is_object())
      return KeywordError(ptr, "items", "must be a boolean or a schema");
    R1_ASSIGN_OR_RETURN(auto min_items, CountKeyword(o, "minItems", ptr));
    R1_ASSIGN_OR_RETURN(auto max_items, CountKeyword(o, "maxItems", ptr));
    const int64_t k = static_cast<int64_t>(prefix.size());
    const int64_t min = min_items.value_or(0);
    int64_t max = max_items.value_or(-1);
    if (items->is_bool() && !items->get_bool()) max = max < 0 ? k : std::min(max, k);
    if (max >= 0 && max < min)
      return KeywordError(ptr, max_items ? "maxItems" : "minItems",
                          "no array satisfies minItems, maxItems and prefixItems");
    const int64_t explicit_count = max >= 0 ? max : std::max(min, k);
    const int64_t item_copies = std::max<int64_t>(0, explicit_count - k) + (max < 0 ? 1 : 0);
    if (explicit_count > opt_.max_states) return TooLarge();
    const std::string items_ptr = PointerChild(ptr, "items");
    R1_ASSIGN_OR_RETURN(bool item_rule, ItemNeedsRule(*items, items_ptr, item_copies));
    auto element = [&](int64_t j) -> absl::StatusOr<Frag> {
      if (j < k) return Schema(nfa, *prefix[j], prefix_ptr[j]);
      if (item_rule) return nfa.Call(RuleFor(items, items_ptr));
      return Schema(nfa, *items, items_ptr);
    };
    return WireArray(nfa, element, min, max, explicit_count);
  }

  using ElementFn = std::function<absl::StatusOr<Frag>(int64_t)>;

  // [ ws, then from position j (after j elements) to j+1 by (, ws)? element ws, for the
  // explicit positions; ] once j >= min; past them, when max < 0, (, ws element ws)* in a loop.
  absl::StatusOr<Frag> WireArray(Nfa& nfa, const ElementFn& element, int64_t min, int64_t max,
                                 int64_t explicit_count) {
    auto step = [&](int64_t j, bool comma) -> absl::StatusOr<Frag> {
      R1_ASSIGN_OR_RETURN(Frag e, element(j));
      std::vector<Frag> parts;
      if (comma) parts = {nfa.Literal(","), Ws(nfa)};
      parts.push_back(e);
      parts.push_back(Ws(nfa));
      return nfa.Seq(parts);
    };
    const Frag open = nfa.Seq({nfa.Literal("["), Ws(nfa)});
    const Frag close = nfa.Literal("]");
    int32_t at = open.out;
    for (int64_t j = 0; j < explicit_count; ++j) {
      if (j >= min) nfa.AddEps(at, close.in);
      R1_ASSIGN_OR_RETURN(Frag f, step(j, j > 0));
      nfa.AddEps(at, f.in);
      at = f.out;
      if (nfa.overflow()) return TooLarge();
    }
    if (explicit_count >= min) nfa.AddEps(at, close.in);
    if (max < 0) {
      if (explicit_count == 0) {  // the first element has no comma before it
        R1_ASSIGN_OR_RETURN(Frag first, step(0, false));
        nfa.AddEps(at, first.in);
        at = first.out;
        nfa.AddEps(at, close.in);
      }
      R1_ASSIGN_OR_RETURN(Frag again, step(explicit_count, true));
      nfa.AddEps(at, again.in);
      nfa.AddEps(again.out, at);
    }
    return Frag{open.in, close.out};
  }

  // True when copying the item schema `copies` times would be too large: it becomes a rule.
  absl::StatusOr<bool> ItemNeedsRule(const json::value& items, const std::string& ptr, int64_t copies) {
    if (copies <= 2) return false;
    Nfa probe(MaxStates());
    R1_ASSIGN_OR_RETURN(Frag f, Schema(probe, items, ptr));
    (void)f;
    return probe.size() * static_cast<size_t>(copies) > kInlineBudget;
  }

  // ---- Any JSON value (the body of the "any" rule; nested values are calls to it).

  Frag AnyValue(Nfa& nfa) {
    NumberSpec plain;
    plain.max_integer_digits = static_cast<int>(opt_.max_integer_digits);
    plain.max_fraction_digits = static_cast<int>(opt_.max_fraction_digits);
    plain.max_exponent_digits = static_cast<int>(opt_.max_exponent_digits);
    std::optional<Dfa>& number = plain_number_[0];
    if (!number) number = JsonNumberDfa(plain);
    std::vector<Frag> alts = {PlainString(nfa), Embed(nfa, *number), nfa.Literal("true"),
                              nfa.Literal("false"), nfa.Literal("null"), AnyObject(nfa)};
    auto any = [&](int64_t) -> absl::StatusOr<Frag> { return nfa.Call(AnyRule()); };
    alts.push_back(*WireArray(nfa, any, 0, -1, 0));  // calls never fail
    return nfa.Alt(alts);
  }

  Frag AnyObject(Nfa& nfa) {
    return WireObject(nfa, {}, Member{PlainString(nfa), nfa.Call(AnyRule()), false});
  }

  // Whitespace between tokens: at most max_whitespace of space, \t, \n, \r.
  Frag Ws(Nfa& nfa) {
    const Frag f{nfa.NewState(), nfa.NewState()};
    int32_t cur = f.in;
    nfa.AddEps(cur, f.out);
    for (int64_t i = 0; i < opt_.max_whitespace; ++i) {
      const int32_t next = nfa.NewState();
      for (uint8_t b : {'\t', '\n', '\r', ' '}) nfa.AddBytes(cur, b, b, next);
      nfa.AddEps(next, f.out);
      cur = next;
    }
    return f;
  }

  const json::value& doc_;
  const GrammarOptions& opt_;
  std::vector<Rule> rules_;
  std::map<std::string, int32_t> rule_of_ptr_;
  std::map<std::string, Color> colors_;
  std::set<std::string> recursive_;
  std::set<std::string> inlining_;
  int32_t any_rule_ = -1;
  std::optional<Dfa> plain_number_[2];  // [integer]
  std::map<std::tuple<int64_t, int64_t, std::string, bool>, Dfa> strings_;
};

}  // namespace

absl::StatusOr<GrammarRules> RulesForJsonSchema(const json::value& schema,
                                                const GrammarOptions& options) {
  R1_RETURN_IF_ERROR(options.Validate());
  return SchemaCompiler(schema, options).CompileSchema();
}

absl::StatusOr<GrammarRules> RulesForJsonObject(const GrammarOptions& options) {
  R1_RETURN_IF_ERROR(options.Validate());
  static const json::value kNull;
  return SchemaCompiler(kNull, options).CompileAnyObject();
}

}  // namespace r1::grammar
