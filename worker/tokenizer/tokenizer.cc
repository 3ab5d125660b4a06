#include "worker/tokenizer/tokenizer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <memory>
#include <string>

#include <boost/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "worker/tokenizer/added_tokens.h"
#include "worker/tokenizer/bpe.h"
#include "worker/tokenizer/nfc.h"
#include "worker/tokenizer/regex_split.h"
#include "worker/tokenizer/tokenizer_json.h"
#include "worker/tokenizer/utf8.h"

namespace r1::tokenizer {

namespace json = boost::json;

namespace {

// GPT-2's pattern, used by the ByteLevel pre-tokenizer when use_regex is true.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The byte-level alphabet: byte b is written as the code point kByteToChar[b].
struct ByteLevelAlphabet {
  uint32_t byte_to_char[256];
  int16_t char_to_byte[512];  // -1: not in the alphabet (every alphabet char is below 512)
  ByteLevelAlphabet() {
    for (auto& c : char_to_byte) c = -1;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byte_to_char[b] = direct ? b : 256 + n++;
      char_to_byte[byte_to_char[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelAlphabet& Alphabet() {
  static const ByteLevelAlphabet* a = new ByteLevelAlphabet();
  return *a;
}

// Hugging Face's ByteLevel decoder for one token: the bytes its characters stand for, or the
// token's own UTF-8 when some character is outside the alphabet.
// Returns true when every character was in the alphabet.
bool ByteLevelDecodeToken(std::string_view token, std::string* out) {
  const auto& alpha = Alphabet();
  size_t start = out->size();
  if (FindInvalidUtf8(token) != std::string_view::npos) {
    out->append(token);
    return false;
  }
  for (size_t i = 0; i < token.size();) {
    uint32_t cp = DecodeUtf8(token, i);
    int b = cp < 512 ? alpha.char_to_byte[cp] : -1;
    if (b < 0) {
      out->resize(start);
      out->append(token);
      return false;
    }
    out->push_back(static_cast<char>(b));
  }
  return true;
}

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Bad(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

const json::value* Field(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}

std::string TypeOf(const json::value& v) {
  if (!v.is_object()) return "";
  const json::value* t = Field(v.as_object(), "type");
  return t && t->is_string() ? std::string(t->as_string()) : "";
}

bool GetBool(const json::object& o, std::string_view key, bool def) {
  const json::value* v = Field(o, key);
  return v && v->is_bool() ? v->as_bool() : def;
}

// The file mapped read-only (no copy, no zero-filled buffer).
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
    }
    auto f = std::unique_ptr<MappedFile>(new MappedFile());
    f->size_ = static_cast<size_t>(st.st_size);
    if (f->size_ > 0) {
      void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        return absl::InternalError(absl::StrCat("cannot map ", path));
      }
      f->data_ = static_cast<const char*>(p);
    }
    ::close(fd);
    return f;
  }
  ~MappedFile() {
    if (data_) munmap(const_cast<char*>(data_), size_);
  }
  std::string_view view() const { return std::string_view(data_ ? data_ : "", size_); }

 private:
  MappedFile() = default;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace

struct Tokenizer::Impl {
  // id -> token text as written in tokenizer.json
  std::vector<std::string> id_to_token;
  std::vector<uint8_t> known;    // 1 when the id is a vocabulary or added token
  std::vector<uint8_t> special;  // 1 for special added tokens
  std::vector<uint8_t> added;    // 1 for every added token
  // Decoded bytes of every token, back to back; token i is [bytes_off[i], bytes_off[i+1]).
  std::string bytes;
  std::vector<uint32_t> bytes_off;
  absl::flat_hash_map<std::string_view, int32_t> token_to_id;  // views into id_to_token
  std::deque<std::string> shadowed;  // vocabulary strings whose id an added token took

  bool nfc = false;
  std::vector<std::unique_ptr<RegexSplitter>> splits;  // applied in order
  AddedTokenMatcher raw_added;         // tokens matched before normalisation
  AddedTokenMatcher normalized_added;  // tokens matched after it
  BpeModel bpe;

  absl::Status EncodeSegment(std::string_view seg, std::vector<int32_t>* ids) const;
  absl::Status EncodeNormalized(std::string_view text, std::vector<int32_t>* ids) const;
};

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  R1_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  const std::string_view text = file->view();
  TokenizerJson doc;
  if (absl::Status s = ParseTokenizerJson(text, &doc); !s.ok()) return Bad(path, s.message());
  if (!doc.rest.is_object()) return Bad(path, "not a JSON object");
  const json::object& top = doc.rest.as_object();

  auto impl = std::make_unique<Impl>();

  // --- model ---
  const json::value* model_v = Field(top, "model");
  if (!model_v || !model_v->is_object()) return Bad(path, "no \"model\" object");
  const json::object& model = model_v->as_object();
  if (std::string t = TypeOf(*model_v); !t.empty() && t != "BPE") {
    return Bad(path, absl::StrCat("model type \"", t, "\" is not supported (only BPE)"));
  }
  if (const json::value* d = Field(model, "dropout"); d && !(d->is_number() && d->to_number<double>() == 0)) {
    return Bad(path, "BPE dropout is not supported");
  }
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json::value* v = Field(model, k);
    if (v && v->is_string() && !v->as_string().empty()) {
      return Bad(path, absl::StrCat("BPE ", k, " is not supported"));
    }
  }
  if (!doc.has_vocab) return Bad(path, "model has no \"vocab\" object");
  const auto& vocab = doc.vocab;
  const json::value* added_v = Field(top, "added_tokens");
  if (added_v && !added_v->is_array()) return Bad(path, "\"added_tokens\" is not an array");

  int64_t max_id = -1;
  for (const auto& e : vocab) {
    if (e.id < 0 || e.id > INT32_MAX) {
      return Bad(path, absl::StrCat("vocab entry \"", AV(doc.Text(e.off, e.len)), "\" has a bad id"));
    }
    max_id = std::max(max_id, e.id);
  }
  std::vector<AddedToken> added;
  if (added_v) {
    for (const json::value& a : added_v->as_array()) {
      if (!a.is_object()) return Bad(path, "an added token is not an object");
      const json::object& o = a.as_object();
      const json::value* id = Field(o, "id");
      const json::value* content = Field(o, "content");
      if (!id || !id->is_int64() || id->as_int64() < 0 || id->as_int64() > INT32_MAX || !content ||
          !content->is_string()) {
        return Bad(path, "an added token lacks a valid id or content");
      }
      AddedToken t;
      t.id = static_cast<int32_t>(id->as_int64());
      t.content = std::string(content->as_string());
      t.single_word = GetBool(o, "single_word", false);
      t.lstrip = GetBool(o, "lstrip", false);
      t.rstrip = GetBool(o, "rstrip", false);
      t.normalized = GetBool(o, "normalized", false);
      t.special = GetBool(o, "special", false);
      if (FindInvalidUtf8(t.content) != std::string_view::npos) {
        return Bad(path, "an added token is not valid UTF-8");
      }
      max_id = std::max<int64_t>(max_id, t.id);
      added.push_back(std::move(t));
    }
  }
  const size_t n = static_cast<size_t>(max_id + 1);
  impl->id_to_token.resize(n);
  impl->known.assign(n, 0);
  impl->special.assign(n, 0);
  impl->added.assign(n, 0);
  for (const auto& e : vocab) {
    impl->id_to_token[e.id].assign(doc.arena.data() + e.off, e.len);
    impl->known[e.id] = 1;
  }
  // Ids whose text is a model vocabulary token (not replaced by an added token).
  std::vector<uint8_t> vocab_only = impl->known;
  for (const AddedToken& t : added) {
    vocab_only[t.id] = 0;
    impl->id_to_token[t.id] = t.content;
    impl->known[t.id] = 1;
    impl->special[t.id] = t.special ? 1 : 0;
    impl->added[t.id] = 1;
  }
  // Decoded bytes of every token and the string -> id map (added tokens win).
  impl->bytes.reserve(n * 8);
  impl->bytes_off.resize(n + 1);
  impl->token_to_id.reserve(n);
  std::vector<uint8_t> pure(n, 0);  // every character in the byte-level alphabet
  for (size_t id = 0; id < n; ++id) {
    impl->bytes_off[id] = static_cast<uint32_t>(impl->bytes.size());
    if (!impl->known[id]) continue;
    pure[id] = ByteLevelDecodeToken(impl->id_to_token[id], &impl->bytes);
  }
  impl->bytes_off[n] = static_cast<uint32_t>(impl->bytes.size());
  for (const auto& e : vocab) {
    std::string_view key = impl->id_to_token[e.id];
    if (!vocab_only[e.id]) {
      // An added token took this id; the vocabulary string still maps to it.
      key = impl->shadowed.emplace_back(doc.Text(e.off, e.len));
    }
    impl->token_to_id.emplace(key, static_cast<int32_t>(e.id));
  }
  // Merges and single bytes refer to the model vocabulary only (added tokens come later).
  auto vocab_id = [&](std::string_view tok) -> int32_t {
    auto it = impl->token_to_id.find(tok);
    return it == impl->token_to_id.end() ? -1 : it->second;
  };
  // Single bytes.
  const auto& alpha = Alphabet();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    AppendUtf8(alpha.byte_to_char[b], &ch);
    impl->bpe.SetByteId(static_cast<uint8_t>(b), vocab_id(ch));
  }
  if (const json::value* unk = Field(model, "unk_token"); unk && unk->is_string()) {
    int32_t id = vocab_id(std::string_view(unk->as_string().data(), unk->as_string().size()));
    if (id >= 0) impl->bpe.SetUnkId(id);
  }
  // Merges: "a b" strings or ["a", "b"] pairs (split by the parser).
  if (Field(model, "merges") && !doc.has_merges) {
    return Bad(path, "model \"merges\" is not an array");
  }
  {
    impl->bpe.ReserveMerges(doc.merges.size());
    std::string joined;
    uint32_t rank = 0;
    int32_t guess = -1;
    for (const auto& m : doc.merges) {
      std::string_view a = doc.Text(m.a_off, m.a_len), b = doc.Text(m.b_off, m.b_len);
      int32_t ia = vocab_id(a), ib = vocab_id(b);
      // Vocabularies made by BPE training give merge results consecutive ids: try the next
      // id before hashing the joined string.
      int32_t iab = -1;
      if (guess >= 0 && static_cast<size_t>(guess) < n && vocab_only[guess]) {
        const std::string& g = impl->id_to_token[guess];
        if (g.size() == a.size() + b.size() && g.compare(0, a.size(), a) == 0 &&
            g.compare(a.size(), b.size(), b) == 0) {
          iab = guess;
        }
      }
      if (iab < 0) {
        joined.assign(a);
        joined.append(b);
        iab = vocab_id(joined);
      }
      guess = iab + 1;
      if (ia < 0 || ib < 0 || iab < 0) {
        return Bad(path, absl::StrCat("merge ", rank, " uses a token missing from the vocab"));
      }
      impl->bpe.AddMerge(ia, ib, iab, rank);
      ++rank;
    }
  }
  for (const AddedToken& t : added) {
    impl->token_to_id.insert_or_assign(std::string_view(impl->id_to_token[t.id]), t.id);
  }
  if (GetBool(model, "ignore_merges", false)) {
    absl::flat_hash_map<std::string_view, int32_t> whole;
    for (const auto& e : vocab) {
      int32_t id = static_cast<int32_t>(e.id);
      if (!pure[id]) continue;
      whole.emplace(std::string_view(impl->bytes.data() + impl->bytes_off[id],
                                     impl->bytes_off[id + 1] - impl->bytes_off[id]),
                    id);
    }
    impl->bpe.SetWholeWordVocab(std::move(whole));
  }
  for (const AddedToken& t : added) {
    if (t.content.empty()) continue;
    AddedTokenMatcher& m = t.normalized ? impl->normalized_added : impl->raw_added;
    std::string content = t.content;
    if (t.normalized) {
      content.clear();
      AppendNfc(t.content, &content);
    }
    m.Add(std::move(content), t.id, t.lstrip, t.rstrip, t.single_word);
  }

  // --- normalizer ---
  if (const json::value* norm = Field(top, "normalizer")) {
    std::vector<const json::value*> steps;
    if (TypeOf(*norm) == "Sequence") {
      const json::value* list = Field(norm->as_object(), "normalizers");
      if (!list || !list->is_array()) return Bad(path, "normalizer Sequence without a list");
      for (const json::value& s : list->as_array()) steps.push_back(&s);
    } else {
      steps.push_back(norm);
    }
    for (const json::value* s : steps) {
      std::string t = TypeOf(*s);
      if (t == "NFC") {
        impl->nfc = true;
      } else {
        return Bad(path, absl::StrCat("normalizer \"", t, "\" is not supported (only NFC)"));
      }
    }
  }
  if (!impl->nfc && !impl->normalized_added.empty()) {
    // Without a normalizer, "normalized" tokens are matched like the others.
    for (const AddedToken& t : added) {
      if (t.normalized && !t.content.empty()) {
        impl->raw_added.Add(t.content, t.id, t.lstrip, t.rstrip, t.single_word);
      }
    }
    impl->normalized_added = AddedTokenMatcher();
  }

  // --- pre-tokenizer ---
  const json::value* pre = Field(top, "pre_tokenizer");
  if (!pre) return Bad(path, "no pre_tokenizer (a byte-level BPE tokenizer.json is required)");
  std::vector<const json::value*> steps;
  if (TypeOf(*pre) == "Sequence") {
    const json::value* list = Field(pre->as_object(), "pretokenizers");
    if (!list || !list->is_array()) return Bad(path, "pre_tokenizer Sequence without a list");
    for (const json::value& s : list->as_array()) steps.push_back(&s);
  } else {
    steps.push_back(pre);
  }
  bool byte_level = false;
  for (const json::value* s : steps) {
    std::string t = TypeOf(*s);
    const json::object& o = s->as_object();
    if (byte_level) return Bad(path, "pre-tokenizers after ByteLevel are not supported");
    if (t == "Split") {
      const json::value* behavior = Field(o, "behavior");
      if (!behavior || !behavior->is_string() || behavior->as_string() != "Isolated") {
        return Bad(path, "Split pre-tokenizer: only behavior \"Isolated\" is supported");
      }
      if (GetBool(o, "invert", false)) return Bad(path, "Split with invert is not supported");
      const json::value* pat = Field(o, "pattern");
      if (!pat || !pat->is_object()) return Bad(path, "Split pre-tokenizer without a pattern");
      const json::value* re = Field(pat->as_object(), "Regex");
      const json::value* lit = Field(pat->as_object(), "String");
      const json::value* p = re ? re : lit;
      if (!p || !p->is_string()) return Bad(path, "Split pattern is neither Regex nor String");
      auto splitter = RegexSplitter::Create(std::string(p->as_string()), re == nullptr);
      if (!splitter.ok()) return Bad(path, splitter.status().message());
      impl->splits.push_back(std::move(*splitter));
    } else if (t == "ByteLevel") {
      if (GetBool(o, "add_prefix_space", false)) {
        return Bad(path, "ByteLevel add_prefix_space is not supported");
      }
      if (GetBool(o, "use_regex", true)) {
        auto splitter = RegexSplitter::Create(kGpt2Pattern, false);
        if (!splitter.ok()) return splitter.status();
        impl->splits.push_back(std::move(*splitter));
      }
      byte_level = true;
    } else {
      return Bad(path, absl::StrCat("pre-tokenizer \"", t, "\" is not supported"));
    }
  }
  if (!byte_level) return Bad(path, "the pre-tokenizer has no ByteLevel step (byte-level BPE only)");
  if (const json::value* dec = Field(top, "decoder"); dec && TypeOf(*dec) != "ByteLevel") {
    return Bad(path, absl::StrCat("decoder \"", TypeOf(*dec), "\" is not supported (only ByteLevel)"));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromDir(const std::string& dir) {
  return FromFile(dir + "/tokenizer.json");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromPath(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return FromDir(path);
  return FromFile(path);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::Status Tokenizer::Impl::EncodeNormalized(std::string_view text,
                                               std::vector<int32_t>* ids) const {
  thread_local std::vector<std::pair<uint32_t, uint32_t>> pieces, next;
  pieces.clear();
  pieces.emplace_back(0, static_cast<uint32_t>(text.size()));
  for (const auto& split : splits) {
    next.clear();
    for (const auto& [b, e] : pieces) {
      size_t before = next.size();
      split->Split(text.substr(b, e - b), &next);
      for (size_t k = before; k < next.size(); ++k) {
        next[k].first += b;
        next[k].second += b;
      }
    }
    pieces.swap(next);
  }
  for (const auto& [b, e] : pieces) bpe.EncodeWord(text.substr(b, e - b), ids);
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::EncodeSegment(std::string_view seg, std::vector<int32_t>* ids) const {
  if (!nfc || IsNfcQuick(seg)) {
    if (normalized_added.empty()) return EncodeNormalized(seg, ids);
  }
  std::string norm;
  if (nfc) {
    AppendNfc(seg, &norm);
  } else {
    norm.assign(seg);
  }
  if (normalized_added.empty()) return EncodeNormalized(norm, ids);
  std::vector<AddedTokenMatcher::Piece> parts;
  normalized_added.Split(norm, &parts);
  for (const auto& p : parts) {
    if (p.id >= 0) {
      ids->push_back(p.id);
    } else {
      R1_RETURN_IF_ERROR(EncodeNormalized(std::string_view(norm).substr(p.begin, p.end - p.begin), ids));
    }
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::EncodeAppend(std::string_view text, std::vector<int32_t>* ids) const {
  if (size_t bad = FindInvalidUtf8(text); bad != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 (bad byte 0x",
                     absl::Hex(static_cast<unsigned char>(text[bad]), absl::kZeroPad2),
                     " at offset ", bad, ")"));
  }
  if (impl_->raw_added.empty()) return impl_->EncodeSegment(text, ids);
  std::vector<AddedTokenMatcher::Piece> parts;
  impl_->raw_added.Split(text, &parts);
  for (const auto& p : parts) {
    if (p.id >= 0) {
      ids->push_back(p.id);
    } else {
      R1_RETURN_IF_ERROR(impl_->EncodeSegment(text.substr(p.begin, p.end - p.begin), ids));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  R1_RETURN_IF_ERROR(EncodeAppend(text, &ids));
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids,
                                              bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string raw;
  raw.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= m.known.size() || !m.known[id]) {
      return absl::InvalidArgumentError(absl::StrCat("unknown token id ", id));
    }
    if (skip_special_tokens && m.special[id]) continue;
    raw.append(m.bytes.data() + m.bytes_off[id], m.bytes_off[id + 1] - m.bytes_off[id]);
  }
  if (FindInvalidUtf8(raw) == std::string_view::npos) return raw;
  std::string out;
  out.reserve(raw.size() + 16);
  AppendUtf8Lossy(raw, &out);
  return out;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->token_to_id.find(token);
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::IdToToken(int32_t id) const {
  if (!IsKnown(id)) return "";
  return impl_->id_to_token[id];
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->known.size()); }

bool Tokenizer::IsKnown(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->known.size() && impl_->known[id];
}

bool Tokenizer::IsSpecial(int32_t id) const { return IsKnown(id) && impl_->special[id]; }

bool Tokenizer::IsAdded(int32_t id) const { return IsKnown(id) && impl_->added[id]; }

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (!IsKnown(id)) return {};
  return std::string_view(impl_->bytes.data() + impl_->bytes_off[id],
                          impl_->bytes_off[id + 1] - impl_->bytes_off[id]);
}

}  // namespace r1::tokenizer
