#include <gtest/gtest.h>

#include "gateway/http/framing.h"
#include "gateway/http/router.h"

namespace r1::gw::http {
namespace {

namespace bhttp = boost::beast::http;

bhttp::fields Fields(std::initializer_list<std::pair<const char*, const char*>> list) {
  bhttp::fields f;
  for (auto& [k, v] : list) f.insert(k, v);
  return f;
}

TEST(Framing, AcceptsOrdinaryRequests) {
  EXPECT_EQ(FramingError(Fields({{"Host", "api.example.com:8080"}}), 11), "");
  EXPECT_EQ(FramingError(Fields({{"Host", "x"}, {"Transfer-Encoding", "chunked"}}), 11), "");
  EXPECT_EQ(FramingError(Fields({{"Host", "x"}, {"Transfer-Encoding", " Chunked "}}), 11), "");
  EXPECT_EQ(FramingError(Fields({{"Host", "x"}, {"Content-Length", "3"}}), 11), "");
  EXPECT_EQ(FramingError(Fields({{"Host", "[::1]:80"}}), 11), "");
  EXPECT_EQ(FramingError(Fields({{"Host", ""}}), 11), "");  // RFC 9112 3.2: empty is allowed
  EXPECT_EQ(FramingError(Fields({}), 10), "");  // HTTP/1.0 needs no Host
}

TEST(Framing, RefusesTransferEncodingsOtherThanChunked) {
  // The smuggling variants of issue 15: each was read as an empty body.
  for (const char* te : {"chunked, identity", "identity", "xchunked", "gzip, chunked", "chunked,",
                         "", "chunked chunked"}) {
    EXPECT_NE(FramingError(Fields({{"Host", "x"}, {"Transfer-Encoding", te}}), 11), "") << te;
  }
  EXPECT_NE(FramingError(Fields({{"Host", "x"}, {"Transfer-Encoding", "chunked"},
                                 {"Transfer-Encoding", "chunked"}}), 11), "");
  EXPECT_NE(FramingError(Fields({{"Host", "x"}, {"Transfer-Encoding", "chunked"},
                                 {"Content-Length", "5"}}), 11), "");
  EXPECT_NE(FramingError(Fields({{"Transfer-Encoding", "chunked"}}), 10), "");
}

TEST(Framing, RefusesMissingDuplicateOrInvalidHost) {
  EXPECT_EQ(FramingError(Fields({}), 11), "missing Host header");
  EXPECT_EQ(FramingError(Fields({{"Host", "a"}, {"Host", "b"}}), 11), "more than one Host header");
  EXPECT_EQ(FramingError(Fields({{"Host", "a"}, {"Host", "a"}}), 10), "more than one Host header");
  for (const char* bad : {"a b", "a/b", "user@host", "a?b", "x\x01"})
    EXPECT_EQ(FramingError(Fields({{"Host", bad}}), 11), "invalid Host header") << bad;
}

TEST(Framing, AbsoluteFormBecomesOriginForm) {
  EXPECT_EQ(OriginForm("http://x/v1/models"), "/v1/models");
  EXPECT_EQ(OriginForm("HTTPS://x:443/v1/models?a=b"), "/v1/models?a=b");
  EXPECT_EQ(OriginForm("http://x"), "/");
  EXPECT_EQ(OriginForm("http://x?q=1"), "/?q=1");
  EXPECT_EQ(OriginForm("/healthz"), "/healthz");
  EXPECT_EQ(OriginForm("*"), "*");
  EXPECT_EQ(OriginForm("ftp://x/y"), "ftp://x/y");
}

TEST(Router, HeadUsesGetAndAllowListsMethods) {
  Router r;
  int got = 0;
  r.Add(bhttp::verb::get, "/healthz", [&](const std::shared_ptr<Session>&, Request&&) { got = 1; });
  r.Add(bhttp::verb::post, "/v1/completions", [&](const std::shared_ptr<Session>&, Request&&) { got = 2; });
  unsigned status = 0;
  const Router::Route* head = r.Find(bhttp::verb::head, "/healthz", &status);
  ASSERT_NE(head, nullptr);
  (*head)(nullptr, Request());
  EXPECT_EQ(got, 1);
  EXPECT_EQ(r.Find(bhttp::verb::head, "/v1/completions", &status), nullptr);
  EXPECT_EQ(status, 405u);
  EXPECT_EQ(r.Find(bhttp::verb::get, "/nope", &status), nullptr);
  EXPECT_EQ(status, 404u);
  EXPECT_EQ(r.Allow("/healthz"), "GET, HEAD");
  EXPECT_EQ(r.Allow("/v1/completions"), "POST");
}

}  // namespace
}  // namespace r1::gw::http
