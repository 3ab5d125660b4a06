#include "worker/tokenizer/tokenizer_json.h"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value_stack.hpp>

#include "absl/strings/str_cat.h"

namespace r1::tokenizer {
namespace json = boost::json;

namespace {

class Handler {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  explicit Handler(TokenizerJson* out) : out_(out) {}

  std::string error;  // set when a callback fails for a reason of ours

  bool on_document_begin(json::error_code&) {
    st_.reset();
    return true;
  }
  bool on_document_end(json::error_code&) {
    out_->rest = st_.release();
    return true;
  }
  bool on_object_begin(json::error_code& ec) {
    ++depth_;
    if (mode_ == Mode::kNone && depth_ == 3 && KeyIs(1, "model") && KeyIs(2, "vocab")) {
      mode_ = Mode::kVocab;
      out_->has_vocab = true;
      return true;
    }
    if (mode_ != Mode::kNone) return Fail(ec, mode_ == Mode::kVocab
                                                  ? "model.vocab holds a nested object"
                                                  : "model.merges holds an object");
    return true;
  }
  bool on_object_end(std::size_t n, json::error_code&) {
    if (mode_ == Mode::kVocab && depth_ == 3) {
      mode_ = Mode::kNone;
      st_.push_null();
    } else {
      st_.push_object(n);
    }
    --depth_;
    return true;
  }
  bool on_array_begin(json::error_code& ec) {
    ++depth_;
    if (mode_ == Mode::kNone && depth_ == 3 && KeyIs(1, "model") && KeyIs(2, "merges")) {
      mode_ = Mode::kMerges;
      out_->has_merges = true;
      return true;
    }
    if (mode_ == Mode::kMerges && depth_ == 4) {
      pair_count_ = 0;
      return true;
    }
    if (mode_ != Mode::kNone) return Fail(ec, "model.vocab or model.merges holds a nested array");
    return true;
  }
  bool on_array_end(std::size_t n, json::error_code& ec) {
    if (mode_ == Mode::kMerges && depth_ == 3) {
      mode_ = Mode::kNone;
      st_.push_null();
    } else if (mode_ == Mode::kMerges && depth_ == 4) {
      if (pair_count_ != 2) return BadMerge(ec);
      out_->merges.push_back(pair_);
    } else {
      st_.push_array(n);
    }
    --depth_;
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    if (mode_ == Mode::kVocab) {
      out_->arena.append(s.data(), s.size());
      return true;
    }
    st_.push_chars(s);
    if (depth_ <= 2) key_[depth_].append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t n, json::error_code&) {
    if (mode_ == Mode::kVocab) {
      // The key so far ends in the arena; the value comes next.
      out_->arena.append(s.data(), s.size());
      key_len_ = static_cast<uint32_t>(n);
      return true;
    }
    st_.push_key(s);
    if (depth_ <= 2) {
      key_[depth_].append(s.data(), s.size());
      done_key_[depth_] = std::move(key_[depth_]);
      key_[depth_].clear();
    }
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    if (mode_ == Mode::kMerges) {
      out_->arena.append(s.data(), s.size());
    } else if (mode_ == Mode::kNone) {
      st_.push_chars(s);
    }
    return true;
  }
  bool on_string(json::string_view s, std::size_t n, json::error_code& ec) {
    if (mode_ == Mode::kVocab) return Fail(ec, "a model.vocab id is not an integer");
    if (mode_ == Mode::kMerges) {
      out_->arena.append(s.data(), s.size());
      uint32_t end = static_cast<uint32_t>(out_->arena.size());
      uint32_t begin = end - static_cast<uint32_t>(n);
      if (depth_ == 3) {  // "a b"
        std::string_view whole(out_->arena.data() + begin, n);
        size_t sp = whole.find(' ');
        if (sp == std::string_view::npos) return BadMerge(ec);
        out_->merges.push_back({begin, static_cast<uint32_t>(sp), begin + static_cast<uint32_t>(sp) + 1,
                                static_cast<uint32_t>(n - sp - 1)});
      } else {  // one side of ["a", "b"]
        if (pair_count_ == 0) {
          pair_.a_off = begin;
          pair_.a_len = static_cast<uint32_t>(n);
        } else {
          pair_.b_off = begin;
          pair_.b_len = static_cast<uint32_t>(n);
        }
        ++pair_count_;
      }
      return true;
    }
    st_.push_string(s);
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(int64_t i, json::string_view, json::error_code& ec) {
    if (mode_ == Mode::kVocab) {
      uint32_t end = static_cast<uint32_t>(out_->arena.size());
      out_->vocab.push_back({end - key_len_, key_len_, i});
      return true;
    }
    if (mode_ == Mode::kMerges) return BadMerge(ec);
    st_.push_int64(i);
    return true;
  }
  bool on_uint64(uint64_t u, json::string_view, json::error_code& ec) {
    if (mode_ != Mode::kNone) return Fail(ec, "a model.vocab id is out of range");
    st_.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view, json::error_code& ec) {
    if (mode_ != Mode::kNone) return Fail(ec, "a model.vocab id is not an integer");
    st_.push_double(d);
    return true;
  }
  bool on_bool(bool b, json::error_code& ec) {
    if (mode_ != Mode::kNone) return Fail(ec, "model.vocab or model.merges holds a boolean");
    st_.push_bool(b);
    return true;
  }
  bool on_null(json::error_code& ec) {
    if (mode_ != Mode::kNone) return Fail(ec, "model.vocab or model.merges holds null");
    st_.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  enum class Mode { kNone, kVocab, kMerges };

  bool KeyIs(int depth, std::string_view k) const { return done_key_[depth] == k; }
  bool Fail(json::error_code& ec, std::string what) {
    error = std::move(what);
    ec = json::error::syntax;
    return false;
  }
  bool BadMerge(json::error_code& ec) {
    return Fail(ec, absl::StrCat("merge ", out_->merges.size(),
                                 " is neither \"a b\" nor [\"a\", \"b\"]"));
  }

  TokenizerJson* out_;
  json::value_stack st_;
  Mode mode_ = Mode::kNone;
  int depth_ = 0;
  std::string key_[3], done_key_[3];  // keys at depths 1 and 2 (the path to vocab / merges)
  uint32_t key_len_ = 0;
  int pair_count_ = 0;
  TokenizerJson::MergeEntry pair_{};
};

}  // namespace

absl::Status ParseTokenizerJson(std::string_view text, TokenizerJson* out) {
  out->arena.reserve(text.size() / 3);
  out->vocab.reserve(1 << 17);
  out->merges.reserve(1 << 17);
  json::parse_options opts;
  opts.max_depth = 64;
  json::basic_parser<Handler> p(opts, out);
  json::error_code ec;
  size_t used = p.write_some(false, text.data(), text.size(), ec);
  if (!ec && used != text.size()) ec = json::error::extra_data;
  if (ec) {
    if (!p.handler().error.empty()) return absl::InvalidArgumentError(p.handler().error);
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", ec.message()));
  }
  if (out->arena.size() > UINT32_MAX) return absl::InvalidArgumentError("tokenizer.json is too big");
  return absl::OkStatus();
}

}  // namespace r1::tokenizer
