#include "common/pem_file.h"

#include <fstream>
#include <sstream>

namespace r1 {

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(flag + ": cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  if (s.str().find("-----BEGIN ") == std::string::npos)
    return absl::InvalidArgumentError(flag + ": " + path + " is not a PEM file");
  return s.str();
}

}  // namespace r1
