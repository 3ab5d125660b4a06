#include "gateway/openai/tool_parser.h"

#include <boost/json.hpp>

namespace r1::gw {
namespace json = boost::json;

namespace {
constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kDsCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDsCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDsCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDsCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDsSep = "<｜tool▁sep｜>";
constexpr std::string_view kOpeners[] = {kHermesOpen, kDsCallsBegin, kDsCallBegin};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}
}  // namespace

ToolCallParser::ToolCallParser(bool enabled, std::function<std::string()> new_id)
    : enabled_(enabled), new_id_(std::move(new_id)) {}

ToolDelta ToolCallParser::Feed(std::string_view text) {
  ToolDelta out;
  if (!enabled_) {
    out.content.assign(text);
    return out;
  }
  pending_.append(text);
  if (!in_calls_) {
    size_t first = std::string::npos;
    for (std::string_view m : kOpeners) first = std::min(first, pending_.find(m));
    if (first == std::string::npos) {
      // Hold back the longest tail that could start a marker.
      size_t keep = 0;
      for (std::string_view m : kOpeners)
        for (size_t k = std::min(m.size() - 1, pending_.size()); k > keep; --k)
          if (pending_.compare(pending_.size() - k, k, m, 0, k) == 0) {
            keep = k;
            break;
          }
      out.content = pending_.substr(0, pending_.size() - keep);
      pending_.erase(0, pending_.size() - keep);
      return out;
    }
    out.content = pending_.substr(0, first);
    pending_.erase(0, first);
    in_calls_ = true;
  }
  ScanCalls(&out);
  return out;
}

// Takes every complete call off the front of pending_ (which starts inside the calls).
void ToolCallParser::ScanCalls(ToolDelta* out) {
  for (;;) {
    // Between calls: white space and the DeepSeek list's own markers.
    size_t skip = 0;
    for (;;) {
      size_t next = pending_.find_first_not_of(" \n\r\t", skip);
      if (next == std::string::npos) {
        skip = pending_.size();
        break;
      }
      skip = next;
      bool marker = false;
      for (std::string_view m : {kDsCallsBegin, kDsCallsEnd}) {
        if (pending_.compare(skip, m.size(), m) == 0) {
          skip += m.size();
          marker = true;
          break;
        }
      }
      if (!marker) break;
    }
    pending_.erase(0, skip);
    std::string_view rest = pending_;
    bool deepseek;
    std::string_view close;
    if (rest.substr(0, kHermesOpen.size()) == kHermesOpen) {
      deepseek = false;
      close = kHermesClose;
    } else if (rest.substr(0, kDsCallBegin.size()) == kDsCallBegin) {
      deepseek = true;
      close = kDsCallEnd;
    } else {
      // Text that is no call: wait while it could still become a marker, else it is content
      // (the model wrote something after its calls; vLLM drops it, we keep it).
      bool maybe = rest.empty();
      for (std::string_view m : {kHermesOpen, kDsCallBegin, kDsCallsBegin, kDsCallsEnd})
        if (rest.size() < m.size() && m.substr(0, rest.size()) == rest) maybe = true;
      if (maybe) return;
      out->content += pending_;
      pending_.clear();
      return;
    }
    const size_t open = deepseek ? kDsCallBegin.size() : kHermesOpen.size();
    size_t end = rest.find(close, open);
    if (end == std::string_view::npos) return;  // the call is not complete yet
    ParsedToolCall call;
    if (ParseCall(rest.substr(open, end - open), deepseek, &call)) {
      call.index = calls_++;
      call.id = new_id_();
      out->calls.push_back(std::move(call));
    } else {
      out->content.append(rest.substr(0, end + close.size()));
    }
    pending_.erase(0, end + close.size());
  }
}

bool ToolCallParser::ParseCall(std::string_view body, bool deepseek, ParsedToolCall* call) const {
  if (deepseek) {
    // TYPE<｜tool▁sep｜>NAME\n```json\nARGS\n```
    size_t sep = body.find(kDsSep);
    if (sep == std::string_view::npos) return false;
    std::string_view after = body.substr(sep + kDsSep.size());
    size_t nl = after.find('\n');
    if (nl == std::string_view::npos) return false;
    call->name = std::string(Trim(after.substr(0, nl)));
    std::string_view args = Trim(after.substr(nl + 1));
    if (args.substr(0, 7) == "```json") args.remove_prefix(7);
    else if (args.substr(0, 3) == "```") args.remove_prefix(3);
    if (args.size() >= 3 && args.substr(args.size() - 3) == "```") args.remove_suffix(3);
    args = Trim(args);
    boost::system::error_code ec;
    json::value v = json::parse(args, ec);
    if (ec || !v.is_object() || call->name.empty()) return false;
    call->arguments = std::string(args);
    return true;
  }
  boost::system::error_code ec;
  json::value v = json::parse(Trim(body), ec);
  if (ec || !v.is_object()) return false;
  const json::object& o = v.get_object();
  auto name = o.find("name");
  if (name == o.end() || !name->value().is_string() || name->value().get_string().empty()) return false;
  call->name = std::string(name->value().get_string());
  auto args = o.find("arguments");
  if (args == o.end()) args = o.find("parameters");
  if (args == o.end()) {
    call->arguments = "{}";
  } else if (args->value().is_string()) {
    call->arguments = std::string(args->value().get_string());
  } else if (args->value().is_object()) {
    call->arguments = json::serialize(args->value());
  } else {
    return false;
  }
  return true;
}

ToolDelta ToolCallParser::Finish() {
  ToolDelta out;
  out.content = std::move(pending_);
  pending_.clear();
  return out;
}

}  // namespace r1::gw
