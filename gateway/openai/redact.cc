#include "gateway/openai/redact.h"

#include <cctype>

namespace r1::gw {
namespace {

bool WordChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return std::isalnum(u) || std::string_view("._:%[]/~@+-").find(c) != std::string_view::npos;
}

bool Digits(std::string_view s, size_t min, size_t max) {
  if (s.size() < min || s.size() > max) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// Four dot-separated groups of 1-3 digits starting at `at`, not preceded by a digit or dot.
bool Ipv4At(std::string_view w, size_t at) {
  if (at > 0 && (std::isdigit(static_cast<unsigned char>(w[at - 1])) || w[at - 1] == '.'))
    return false;
  size_t i = at;
  for (int group = 0; group < 4; ++group) {
    size_t start = i;
    while (i < w.size() && i - start < 4 && std::isdigit(static_cast<unsigned char>(w[i]))) ++i;
    if (i == start || i - start > 3) return false;
    if (group < 3) {
      if (i >= w.size() || w[i] != '.') return false;
      ++i;
    }
  }
  return true;
}

bool HasIpv4(std::string_view w) {
  for (size_t i = 0; i < w.size(); ++i)
    if (std::isdigit(static_cast<unsigned char>(w[i])) && Ipv4At(w, i)) return true;
  return false;
}

// "[" hex digits, ":" and "." (an embedded IPv4), "%zone" "]".
bool HasBracketedIpv6(std::string_view w) {
  for (size_t open = w.find('['); open != std::string_view::npos; open = w.find('[', open + 1)) {
    size_t close = w.find(']', open);
    if (close == std::string_view::npos) return false;
    std::string_view in = w.substr(open + 1, close - open - 1);
    bool colon = in.find(':') != std::string_view::npos;
    bool ok = colon;
    for (char c : in)
      ok = ok && (std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.' || c == '%');
    if (ok) return true;
  }
  return false;
}

// host:port, the host a name with at least one letter (IP addresses are found above).
bool IsNamePort(std::string_view w) {
  size_t colon = w.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || !Digits(w.substr(colon + 1), 1, 5))
    return false;
  bool letter = false;
  for (char c : w.substr(0, colon)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '.' || c == '-' || c == '_')) return false;
    letter = letter || std::isalpha(u);
  }
  return letter;
}

bool IsAddress(std::string_view w) {
  for (std::string_view scheme : {"ipv4:", "ipv6:", "unix:", "unix-abstract:", "dns:", "vsock:"}) {
    if (w.size() > scheme.size() && w.substr(0, scheme.size()) == scheme) return true;
  }
  return HasIpv4(w) || HasBracketedIpv6(w) || IsNamePort(w);
}

}  // namespace

std::string RedactAddresses(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  size_t i = 0;
  while (i < message.size()) {
    if (!WordChar(message[i])) {
      out.push_back(message[i++]);
      continue;
    }
    size_t end = i;
    while (end < message.size() && WordChar(message[end])) ++end;
    std::string_view word = message.substr(i, end - i);
    // Trailing ":" and "." are punctuation ("...:50051: Connection refused", "... at 10.0.0.1.").
    size_t keep = word.size();
    while (keep > 0 && (word[keep - 1] == ':' || word[keep - 1] == '.')) --keep;
    if (keep > 0 && IsAddress(word.substr(0, keep))) {
      out.append("<address>");
      out.append(word.substr(keep));
    } else {
      out.append(word);
    }
    i = end;
  }
  return out;
}

}  // namespace r1::gw
