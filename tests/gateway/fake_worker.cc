// A scripted stand-in for r1-worker: serves r1serve.v1.Inference and grpc.health.v1 with
// behaviour chosen per request by directives in the prompt (for chat: the last message):
//   @tokens=N        emit N tokens (default --tokens)
//   @interval=MS     pause between tokens (default --interval-ms)
//   @first_delay=MS  pause before the first token
//   @fail_before=C   fail with gRPC status code C before any token
//   @fail_after=K    after K tokens, end with finish_reason ERROR
//   @abort_after=K   after K tokens, end the call with UNAVAILABLE
//   @die_after=K     after K tokens, kill this process (SIGKILL); K=0 dies before any token
//   @stall_after=K   after K tokens, send nothing more (the call stays open until cancelled)
//   @refault         the failures above also strike resumed calls (counting this call's tokens)
//   @think           emit reasoning, then "</think>" split across two messages, then answer
//   @echo            emit one message holding the request's fields as JSON
//   @fail_choice=C   @fail_after strikes choice C only (default: every choice)
//   @bad_choice_index  tag every message with a choice_index past the request's choices
// GenerateRequest.n choices are honoured as r1-worker does: each choice emits the same script
// in the one stream, token by token in turn (choice 0's token i, choice 1's token i, ...), each
// message tagged with its choice_index, each choice ending with its own last message; the
// scripted failures strike the whole call at step k (@fail_after: each choice, or the one
// @fail_choice names).
// Flow control shows on stdout, per choice: "BLOCKED <id> at <k>" when writing step k waited
// over 200 ms (the client stopped reading; every choice of the call is held),
// "CANCELLED <id> at <k>" when the call was cancelled after k of the choice's tokens were
// written, "DONE <id> <k>" when all k were (k counts this call's tokens). <id> is the
// request_id, with "-<choice>" appended when n > 1 (r1-worker's names for the choices).
// Token i of a request has id 100 + i and text "NAME-i ". A request with `resume` continues
// from token i = resume.output_token_ids size (max_tokens then counts new tokens; usage counts
// all), as a real worker does, so a resumed stream shows which worker made which token.
// Global flags can make every request fail, make every request hang (accepted, never a token:
// a stuck engine behind a live gRPC server), report memory pressure or NOT_SERVING while a
// file exists, and report a fixed queue in load reports.
// Prints "PORT <n>" on stdout once serving.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "common/flags.h"
#include "r1serve/v1/inference.grpc.pb.h"

namespace {

using r1serve::v1::GenerateRequest;
using r1serve::v1::GenerateResponse;

struct Options {
  std::string name;
  std::string model_id;
  std::string pressure_file;
  int64_t report_waiting = 0;
  int64_t tokens = 8;
  int64_t interval_ms = 0;
  int64_t fail_before = 0;
  bool hang = false;
  std::atomic<int64_t> running{0};
  std::atomic<int64_t> served{0};
};

int64_t Directive(const std::string& prompt, const std::string& name, int64_t def) {
  std::string key = "@" + name + "=";
  size_t p = prompt.find(key);
  if (p == std::string::npos) return def;
  return std::atoll(prompt.c_str() + p + key.size());
}

std::string PromptOf(const GenerateRequest& r) {
  if (r.has_chat() && r.chat().messages_size() > 0)
    return r.chat().messages(r.chat().messages_size() - 1).content();
  if (r.prompt_case() == GenerateRequest::kText) return r.text();
  return "";
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) >= 0x20) out.push_back(c);
  }
  return out + "\"";
}

std::string EchoJson(const GenerateRequest& r, uint32_t choice) {
  const auto& s = r.sampling();
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"temperature\":%g,\"top_p\":%g,\"top_k\":%d,\"min_p\":%g,"
                "\"repetition_penalty\":%g,\"presence_penalty\":%g,\"frequency_penalty\":%g,"
                "\"seed\":%s,\"max_tokens\":%u,\"ignore_eos\":%s,\"logprobs\":%s,"
                "\"top_logprobs\":%u,",
                s.temperature(), s.top_p(), s.top_k(), s.min_p(), s.repetition_penalty(),
                s.presence_penalty(), s.frequency_penalty(),
                s.has_seed() ? std::to_string(s.seed()).c_str() : "null", r.max_tokens(),
                r.ignore_eos() ? "true" : "false", r.logprobs() ? "true" : "false",
                r.top_logprobs());
  std::string out = buf;
  out += "\"stop\":[";
  for (int i = 0; i < r.stop_size(); ++i) {
    if (i) out += ",";
    out += Quote(r.stop(i));
  }
  out += "],\"stop_token_ids\":[";
  for (int i = 0; i < r.stop_token_ids_size(); ++i) {
    if (i) out += ",";
    out += std::to_string(r.stop_token_ids(i));
  }
  out += "],\"prompt_kind\":";
  switch (r.prompt_case()) {
    case GenerateRequest::kText: out += "\"text\",\"text\":" + Quote(r.text()); break;
    case GenerateRequest::kTokenIds: {
      out += "\"token_ids\",\"ids\":[";
      for (int i = 0; i < r.token_ids().ids_size(); ++i) {
        if (i) out += ",";
        out += std::to_string(r.token_ids().ids(i));
      }
      out += "]";
      break;
    }
    case GenerateRequest::kChat: {
      out += "\"chat\",\"messages\":[";
      for (int i = 0; i < r.chat().messages_size(); ++i) {
        if (i) out += ",";
        out += "{\"role\":";
        out += Quote(r.chat().messages(i).role());
        out += ",\"content\":";
        out += Quote(r.chat().messages(i).content());
        out += "}";
      }
      out += "]";
      break;
    }
    default: out += "null";
  }
  out += ",\"resume\":[";
  for (int i = 0; i < r.resume().output_token_ids_size(); ++i) {
    if (i) out += ",";
    out += std::to_string(r.resume().output_token_ids(i));
  }
  out += "],\"request_id\":" + Quote(r.request_id()) + ",\"n\":" + std::to_string(r.n()) +
         ",\"choice_index\":" + std::to_string(choice) + "}";
  return out;
}

class FakeInference final : public r1serve::v1::Inference::Service {
 public:
  explicit FakeInference(Options* o) : o_(o) {}

  grpc::Status Generate(grpc::ServerContext* ctx, const GenerateRequest* req,
                        grpc::ServerWriter<GenerateResponse>* writer) override {
    struct Running {
      Options* o;
      explicit Running(Options* o) : o(o) { ++o->running; }
      ~Running() { --o->running; }
    } running(o_);
    ++o_->served;
    const std::string prompt = PromptOf(*req);
    int64_t fail_before = Directive(prompt, "fail_before", o_->fail_before);
    if (fail_before > 0)
      return grpc::Status(static_cast<grpc::StatusCode>(fail_before), "scripted failure");
    if (o_->hang) {
      while (!ctx->IsCancelled()) Sleep(ctx, 1000);
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled while hanging");
    }
    const int64_t resumed = req->resume().output_token_ids_size();
    // Scripted failures strike a stream once, on its first worker, unless @refault.
    const bool faults = resumed == 0 || prompt.find("@refault") != std::string::npos;
    const int64_t die_after = faults ? Directive(prompt, "die_after", -1) : -1;
    if (die_after == 0) kill(getpid(), SIGKILL);
    int64_t n = Directive(prompt, "tokens", o_->tokens);
    const int64_t interval = Directive(prompt, "interval", o_->interval_ms);
    const int64_t first_delay = Directive(prompt, "first_delay", 0);
    const int64_t fail_after = faults ? Directive(prompt, "fail_after", -1) : -1;
    const int64_t abort_after = faults ? Directive(prompt, "abort_after", -1) : -1;
    const int64_t stall_after = faults ? Directive(prompt, "stall_after", -1) : -1;
    const bool think = prompt.find("@think") != std::string::npos;
    const bool echo = prompt.find("@echo") != std::string::npos;
    // "@say:TEXT": the output is TEXT, streamed three code points a message (so markers
    // such as <tool_call> arrive split across messages).
    const size_t say = prompt.find("@say:");
    auto finish = r1serve::v1::FINISH_REASON_STOP;
    if (req->max_tokens() > 0 && n > resumed + req->max_tokens()) {
      n = resumed + req->max_tokens();
      finish = r1serve::v1::FINISH_REASON_LENGTH;
    }
    if (echo) n = 1;
    if (first_delay > 0) Sleep(ctx, first_delay);
    std::vector<std::string> pieces;
    if (say != std::string::npos) {
      const std::string text = prompt.substr(say + 5);
      for (size_t i = 0; i < text.size();) {
        size_t j = i;
        for (int cp = 0; cp < 3 && j < text.size(); ++cp) {
          ++j;
          while (j < text.size() && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80) ++j;
        }
        pieces.push_back(text.substr(i, j - i));
        i = j;
      }
      n = static_cast<int64_t>(pieces.size());
    } else if (echo) {
      pieces.push_back("");  // per choice, below
    } else if (think) {
      pieces = {"Let", " me", " think.", "</th", "ink>", "\n\nThe", " answer", " is", " 4."};
      n = static_cast<int64_t>(pieces.size());
    } else {
      for (int64_t i = 0; i < n; ++i) pieces.push_back(o_->name + "-" + std::to_string(i) + " ");
    }
    const int64_t choices = req->n() > 1 ? req->n() : 1;
    const int64_t fail_choice = Directive(prompt, "fail_choice", -1);
    const uint32_t index_offset =
        prompt.find("@bad_choice_index") != std::string::npos ? static_cast<uint32_t>(choices) : 0;
    std::vector<std::string> ids;
    for (int64_t c = 0; c < choices; ++c)
      ids.push_back(choices > 1 ? req->request_id() + "-" + std::to_string(c) : req->request_id());
    std::vector<bool> ended(static_cast<size_t>(choices), false);
    auto cancelled = [&](int64_t k) {
      for (int64_t c = 0; c < choices; ++c)
        if (!ended[c]) Say("CANCELLED " + ids[c] + " at " + std::to_string(k));
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    };
    bool blocked = false;
    const int64_t from = echo ? 0 : resumed;
    for (int64_t i = from; i < n; ++i) {
      const int64_t k = i - from;  // tokens each choice of this call sent so far
      if (ctx->IsCancelled()) return cancelled(k);
      if (k > 0 && interval > 0) Sleep(ctx, interval);
      if (die_after >= 0 && k == die_after) kill(getpid(), SIGKILL);
      if (stall_after >= 0 && k == stall_after) {
        while (!ctx->IsCancelled()) Sleep(ctx, 1000);
        return cancelled(k);
      }
      if (abort_after >= 0 && k == abort_after)
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "scripted abort");
      for (int64_t c = 0; c < choices; ++c) {
        if (ended[c]) continue;
        const std::string piece = echo ? EchoJson(*req, static_cast<uint32_t>(c)) : pieces[i];
        GenerateResponse m;
        m.set_choice_index(static_cast<uint32_t>(c) + index_offset);
        m.add_token_ids(static_cast<int32_t>(100 + i));
        m.set_text(piece);
        if (req->logprobs()) {
          auto* lp = m.add_logprobs();
          lp->set_token_id(static_cast<int32_t>(100 + i));
          lp->set_token(piece);
          lp->set_logprob(-0.5f);
          for (uint32_t t = 0; t < req->top_logprobs(); ++t) {
            auto* top = lp->add_top_logprobs();
            top->set_token_id(static_cast<int32_t>(t));
            top->set_token("alt" + std::to_string(t));
            top->set_logprob(-1.0f - static_cast<float>(t));
          }
        }
        if (fail_after >= 0 && k + 1 == fail_after && (fail_choice < 0 || fail_choice == c)) {
          m.set_finish_reason(r1serve::v1::FINISH_REASON_ERROR);
          m.set_error_message("scripted failure mid-stream");
          ended[c] = true;
        } else if (i + 1 == n) {
          m.set_finish_reason(finish);
          m.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(prompt.size() / 4 + 1));
          m.mutable_usage()->set_completion_tokens(static_cast<uint32_t>(n));
        }
        const auto write_start = std::chrono::steady_clock::now();
        const bool written = writer->Write(m);
        if (!blocked && std::chrono::steady_clock::now() - write_start > std::chrono::milliseconds(200)) {
          blocked = true;
          for (int64_t b = 0; b < choices; ++b) Say("BLOCKED " + ids[b] + " at " + std::to_string(k));
        }
        if (!written) {
          ended[c] = false;
          return cancelled(k);
        }
        if (i + 1 == n && !ended[c]) {
          ended[c] = true;
          Say("DONE " + ids[c] + " " + std::to_string(n - from));
        }
      }
      if (std::find(ended.begin(), ended.end(), false) == ended.end()) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status GetLoad(grpc::ServerContext*, const r1serve::v1::LoadRequest*,
                       r1serve::v1::LoadReport* r) override {
    bool pressure = !o_->pressure_file.empty() && std::filesystem::exists(o_->pressure_file);
    r->set_running(static_cast<uint32_t>(o_->running.load()));
    r->set_waiting(static_cast<uint32_t>(o_->report_waiting));
    r->set_kv_blocks_used(10);
    r->set_kv_blocks_total(100);
    r->set_kv_block_size(16);
    r->set_prefix_caching(true);
    r->set_resume(true);
    r->set_device_memory_total_bytes(1000);
    r->set_device_memory_used_bytes(pressure ? 990 : 100);
    r->set_max_running(64);
    r->set_max_waiting(256);
    r->set_max_model_len(4096);
    r->set_model_id(o_->model_id);
    r->set_device("cpu");
    // It renders nothing, so it takes tools (the gateway parses what it says).
    r->set_chat_template("fake");
    r->set_tools(true);
    return grpc::Status::OK;
  }

 private:
  static void Say(const std::string& line) {
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }
  static grpc::Status Cancelled(const std::string& id, int64_t written) {
    Say("CANCELLED " + id + " at " + std::to_string(written));
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }
  static void Sleep(grpc::ServerContext* ctx, int64_t ms) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end && !ctx->IsCancelled())
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          std::chrono::milliseconds(5), end - std::chrono::steady_clock::now()));
  }
  Options* o_;
};

}  // namespace

int main(int argc, char** argv) {
  r1::Flags flags("fake_worker", "Scripted r1serve.v1.Inference server for gateway tests.");
  std::string* listen = flags.String("listen", "127.0.0.1:0", "HOST:PORT (port 0: any free port)");
  std::string* name = flags.String("name", "w", "prefix of every emitted token");
  std::string* model_id = flags.String("model-id", "fake-model", "model id in load reports");
  std::string* pressure = flags.String("pressure-file", "", "report memory pressure while this file exists");
  int64_t* tokens = flags.Int("tokens", 8, "tokens per request unless @tokens= says otherwise");
  int64_t* interval = flags.Int("interval-ms", 0, "pause between tokens unless @interval= says otherwise");
  int64_t* fail_before = flags.Int("fail-before-first", 0, "when > 0, every Generate fails with this gRPC code");
  bool* hang = flags.Bool("hang", false, "accept every Generate and never send a token (until cancelled)");
  std::string* not_serving = flags.String("not-serving-file", "", "health check says NOT_SERVING while this file exists (a worker whose engine watchdog fired)");
  int64_t* report_waiting = flags.Int("report-waiting", 0, "waiting requests to report in every load report");
  flags.ParseOrExit(argc, argv);

  Options o;
  o.name = *name;
  o.model_id = *model_id;
  o.pressure_file = *pressure;
  o.tokens = *tokens;
  o.interval_ms = *interval;
  o.fail_before = *fail_before;
  o.hang = *hang;
  o.report_waiting = *report_waiting;
  FakeInference service(&o);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(*listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "fake_worker: cannot listen on %s\n", listen->c_str());
    return 1;
  }
  if (!not_serving->empty()) {
    std::thread([&server, path = *not_serving] {
      bool serving = true;
      for (;;) {
        const bool want = !std::filesystem::exists(path);
        if (want != serving) server->GetHealthCheckService()->SetServingStatus(want);
        serving = want;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }).detach();
  }
  std::printf("PORT %d\n", port);
  std::fflush(stdout);
  server->Wait();
  return 0;
}
