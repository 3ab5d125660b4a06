// r1-tokenize: JSON lines in, JSON lines out.
//   encode (default): each input line is one JSON string; prints one JSON array of ids.
//   --decode:         each input line is one JSON array of ids; prints one JSON string.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "common/flags.h"
#include "worker/tokenizer/demo_files.h"
#include "worker/tokenizer/tokenizer.h"

namespace {

namespace json = boost::json;
using r1::tokenizer::Tokenizer;

// Returns an error message, or "" on success.
std::string EncodeLine(const Tokenizer& tok, const std::string& line, std::string* out) {
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec) return "not valid JSON: " + ec.message();
  if (!v.is_string()) return "expected a JSON string";
  auto ids = tok.Encode(std::string_view(v.as_string().data(), v.as_string().size()));
  if (!ids.ok()) return std::string(ids.status().message());
  out->push_back('[');
  for (size_t i = 0; i < ids->size(); ++i) {
    if (i) out->push_back(',');
    out->append(std::to_string((*ids)[i]));
  }
  out->push_back(']');
  return "";
}

std::string DecodeLine(const Tokenizer& tok, const std::string& line, bool skip_special,
                       std::string* out) {
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec) return "not valid JSON: " + ec.message();
  if (!v.is_array()) return "expected a JSON array of token ids";
  std::vector<int32_t> ids;
  for (const json::value& e : v.as_array()) {
    if (!e.is_int64() || e.as_int64() < INT32_MIN || e.as_int64() > INT32_MAX) {
      return "expected a JSON array of integer token ids";
    }
    ids.push_back(static_cast<int32_t>(e.as_int64()));
  }
  auto text = tok.Decode(ids, skip_special);
  if (!text.ok()) return std::string(text.status().message());
  out->append(json::serialize(json::string(*text)));
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags(
      "r1-tokenize",
      "Tokenizes JSON lines from standard input with a Hugging Face tokenizer.json.\n"
      "Encode (default): each line is one JSON string; prints one JSON array of token ids per\n"
      "line (no special tokens are added; special tokens written in the text are recognised).\n"
      "--decode: each line is one JSON array of ids; prints one JSON string per line.\n"
      "A bad line prints 'null' on standard output (so output lines stay aligned with input\n"
      "lines), one error line on standard error naming the line number, and processing goes\n"
      "on; the exit status is then 1. A bad flag or tokenizer file exits with status 2.");
  std::string* tokenizer = flags.String(
      "tokenizer", "", "tokenizer.json file, or a checkpoint directory holding one (required)");
  bool* decode = flags.Bool("decode", false, "decode arrays of ids instead of encoding strings");
  bool* skip_special = flags.Bool("skip-special-tokens", false,
                                  "with --decode: leave special tokens out of the text");
  std::string* demo_dir = flags.String(
      "write-demo-dir", "",
      "instead of reading stdin: write DeepSeek-R1-Distill demo tokenizer files made from "
      "--tokenizer (the npm Qwen or Llama 3.1 tokenizer.json: the Qwen or the Llama distill's) "
      "into this existing directory, and exit");
  flags.ParseOrExit(argc, argv);
  if (tokenizer->empty()) flags.Fail("--tokenizer is required (a tokenizer.json or a directory)");

  if (!demo_dir->empty()) {
    absl::Status s = r1::tokenizer::WriteDemoTokenizerFiles(*tokenizer, *demo_dir);
    if (!s.ok()) flags.Fail(std::string(s.message()));
    return 0;
  }
  auto tok = Tokenizer::FromPath(*tokenizer);
  if (!tok.ok()) flags.Fail(std::string(tok.status().message()));

  std::ios::sync_with_stdio(false);
  std::string line, out;
  int64_t line_no = 0;
  int64_t bad = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.clear();
    std::string err = *decode ? DecodeLine(**tok, line, *skip_special, &out)
                              : EncodeLine(**tok, line, &out);
    if (!err.empty()) {
      ++bad;
      std::cerr << "r1-tokenize: line " << line_no << ": " << err << "\n";
      out = "null";
    }
    out.push_back('\n');
    std::cout.write(out.data(), static_cast<std::streamsize>(out.size()));
  }
  std::cout.flush();
  if (!std::cout) {
    std::cerr << "r1-tokenize: cannot write standard output\n";
    return 1;
  }
  return bad ? 1 : 0;
}
