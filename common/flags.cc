#include "common/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace r1 {

Flags::Flags(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

Flags::Flag* Flags::Add(const std::string& name, Type type, std::string def_text,
                        std::string help, void* value) {
  order_.push_back(name);
  Flag& f = flags_[name];
  f = Flag{type, std::move(help), std::move(def_text), value};
  return &f;
}

std::string* Flags::String(const std::string& name, std::string def, std::string help) {
  strings_.push_back(def);
  Add(name, Type::kString, def.empty() ? "\"\"" : def, std::move(help), &strings_.back());
  return &strings_.back();
}

int64_t* Flags::Int(const std::string& name, int64_t def, std::string help) {
  ints_.push_back(def);
  Add(name, Type::kInt, std::to_string(def), std::move(help), &ints_.back());
  return &ints_.back();
}

double* Flags::Double(const std::string& name, double def, std::string help) {
  doubles_.push_back(def);
  std::ostringstream os;
  os << def;
  Add(name, Type::kDouble, os.str(), std::move(help), &doubles_.back());
  return &doubles_.back();
}

bool* Flags::Bool(const std::string& name, bool def, std::string help) {
  bools_.push_back(def);
  Add(name, Type::kBool, def ? "true" : "false", std::move(help), &bools_.back());
  return &bools_.back();
}

absl::Status Flags::Assign(const std::string& name, Flag& flag, const std::string& text) {
  auto bad = [&](const char* what) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", name, ": '", text, "' is not ", what));
  };
  switch (flag.type) {
    case Type::kString:
      *static_cast<std::string*>(flag.value) = text;
      break;
    case Type::kInt: {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || errno == ERANGE) return bad("an integer");
      *static_cast<int64_t*>(flag.value) = v;
      break;
    }
    case Type::kDouble: {
      errno = 0;
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
        return bad("a number");
      *static_cast<double*>(flag.value) = v;
      break;
    }
    case Type::kBool:
      if (text == "true" || text == "1" || text == "yes") {
        *static_cast<bool*>(flag.value) = true;
      } else if (text == "false" || text == "0" || text == "no") {
        *static_cast<bool*>(flag.value) = false;
      } else {
        return bad("true or false");
      }
      break;
  }
  flag.set = true;
  return absl::OkStatus();
}

absl::Status Flags::Parse(int argc, const char* const* argv, bool* help_requested) {
  *help_requested = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      *help_requested = true;
      return absl::OkStatus();
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument '", arg, "' (flags start with --; see --help)"));
    }
    std::string body = arg.substr(2);
    std::string name = body, value;
    bool has_value = false;
    if (auto eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    Flag& flag = it->second;
    if (!has_value) {
      if (flag.type == Type::kBool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    if (absl::Status s = Assign(name, flag, value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void Flags::ParseOrExit(int argc, char** argv) {
  bool help = false;
  absl::Status s = Parse(argc, argv, &help);
  if (help) {
    std::cout << HelpText();
    std::exit(0);
  }
  if (!s.ok()) Fail(std::string(s.message()));
}

void Flags::Fail(const std::string& message) const {
  std::cerr << program_ << ": " << message << "\n";
  std::exit(2);
}

bool Flags::IsSet(const std::string& name) const {
  auto it = flags_.find(name);
  return it != flags_.end() && it->second.set;
}

std::string Flags::HelpText() const {
  std::ostringstream os;
  os << "Usage: " << program_ << " [flags]\n" << summary_ << "\n\nFlags:\n";
  for (const std::string& name : order_) {
    const Flag& f = flags_.at(name);
    const char* type = f.type == Type::kString ? "string"
                       : f.type == Type::kInt  ? "int"
                       : f.type == Type::kDouble ? "number"
                                                 : "bool";
    os << "  --" << name << " (" << type << ", default " << f.def_text << ")\n      "
       << f.help << "\n";
  }
  os << "  --help\n      print this help and exit\n";
  return os.str();
}

std::vector<std::string> SplitCommaList(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace r1
