// Command-line flags: every limit is a flag with a default, and --help prints them all.
//
//   r1::Flags flags("r1-worker", "Serves a Qwen2 checkpoint over gRPC.");
//   std::string* model = flags.String("model", "", "checkpoint directory (required)");
//   int64_t* port = flags.Int("max-running", 64, "most sequences in one batch");
//   flags.ParseOrExit(argc, argv);
//
// Accepted forms: --name VALUE, --name=VALUE, and for booleans --name, --name=true|false.
// An unknown flag, a missing value or a value of the wrong type prints one line to stderr
// and exits with status 2.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace r1 {

class Flags {
 public:
  Flags(std::string program, std::string summary);

  std::string* String(const std::string& name, std::string def, std::string help);
  int64_t* Int(const std::string& name, int64_t def, std::string help);
  double* Double(const std::string& name, double def, std::string help);
  bool* Bool(const std::string& name, bool def, std::string help);

  // Parses argv; on error returns InvalidArgument naming the flag. Sets *help_requested for
  // --help / -h (and parses nothing further).
  absl::Status Parse(int argc, const char* const* argv, bool* help_requested);
  // Parse, printing --help and exiting 0, or printing the error and exiting 2.
  void ParseOrExit(int argc, char** argv);

  // True when the flag was given on the command line.
  bool IsSet(const std::string& name) const;
  std::string HelpText() const;
  const std::string& program() const { return program_; }

  // Prints "<program>: <message>" to stderr and exits with status 2. For bad flag values
  // found after parsing (a missing required flag, values that conflict).
  [[noreturn]] void Fail(const std::string& message) const;

 private:
  enum class Type { kString, kInt, kDouble, kBool };
  struct Flag {
    Type type;
    std::string help;
    std::string def_text;
    void* value;
    bool set = false;
  };
  Flag* Add(const std::string& name, Type type, std::string def_text, std::string help,
            void* value);
  absl::Status Assign(const std::string& name, Flag& flag, const std::string& text);

  std::string program_;
  std::string summary_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_;
  // Storage with stable addresses.
  std::deque<std::string> strings_;
  std::deque<int64_t> ints_;
  std::deque<double> doubles_;
  std::deque<bool> bools_;
};

// Splits "a,b,c" into {"a","b","c"}, dropping empty items.
std::vector<std::string> SplitCommaList(const std::string& s);

}  // namespace r1
