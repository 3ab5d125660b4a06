#include "common/api_keys.h"

#include <fstream>

namespace r1 {

absl::StatusOr<std::vector<std::string>> LoadKeyFile(const std::string& path,
                                                     const std::string& what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + what + " " + path);
  std::vector<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
      line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    keys.push_back(line.substr(start));
  }
  if (keys.empty()) return absl::InvalidArgumentError(what + " " + path + " holds no key");
  return keys;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Walk the longer length; a length difference makes the result false too.
  size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | (x ^ y);
  }
  return diff == 0;
}

bool Authorized(std::string_view authorization, const std::vector<std::string>& keys) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() < kBearer.size()) return false;
  // The scheme is case-insensitive.
  for (size_t i = 0; i < kBearer.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
        std::tolower(static_cast<unsigned char>(kBearer[i])))
      return false;
  std::string_view given = authorization.substr(kBearer.size());
  bool ok = false;
  for (const std::string& k : keys) ok |= ConstantTimeEquals(given, k);
  return ok;
}

}  // namespace r1
