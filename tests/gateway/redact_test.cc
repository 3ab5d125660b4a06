#include <gtest/gtest.h>

#include "gateway/openai/redact.h"
#include "gateway/openai/response.h"

namespace r1::gw {
namespace {

TEST(Redact, GrpcConnectFailureNamesNoAddress) {
  // The message r1-gateway 0.x sent in a 503 body (issue 15), verbatim.
  EXPECT_EQ(RedactAddresses("failed to connect to all addresses; last error: UNKNOWN: "
                            "ipv4:127.0.0.1:33309: Failed to connect to remote host: "
                            "Connection refused"),
            "failed to connect to all addresses; last error: UNKNOWN: <address>: Failed to "
            "connect to remote host: Connection refused");
}

TEST(Redact, EveryAddressForm) {
  EXPECT_EQ(RedactAddresses("ipv6:%5B::1%5D:50051"), "<address>");
  EXPECT_EQ(RedactAddresses("ipv6:[fe80::1%eth0]:50051 down"), "<address> down");
  EXPECT_EQ(RedactAddresses("unix:/run/r1/worker.sock"), "<address>");
  EXPECT_EQ(RedactAddresses("unix-abstract:r1"), "<address>");
  EXPECT_EQ(RedactAddresses("dns:///r1-worker-headless:50051"), "<address>");
  EXPECT_EQ(RedactAddresses("peer 10.0.3.7:50051, then 10.0.3.8."), "peer <address>, then <address>.");
  EXPECT_EQ(RedactAddresses("[2001:db8::7]:50051 and [::1]"), "<address> and <address>");
  EXPECT_EQ(RedactAddresses("DNS resolution failed for gpu-box-3.internal:50051: timeout"),
            "DNS resolution failed for <address>: timeout");
  EXPECT_EQ(RedactAddresses("(localhost:50051)"), "(<address>)");
  EXPECT_EQ(RedactAddresses("\"10.1.2.3\""), "\"<address>\"");
}

TEST(Redact, OrdinaryMessagesAreUntouched) {
  for (const char* m : {
           "'messages[0].content' must be a string",
           "temperature must be in [0, 2]",
           "the request body is not valid JSON: incomplete JSON",
           "UNAVAILABLE: worker is draining",
           "max_tokens: 5 is more than 4",
           "version 1.2.3 at 12:30",
           "every worker's circuit breaker is open; retry later",
           "no such route: /v1/x:1",
       }) {
    EXPECT_EQ(RedactAddresses(m), m);
  }
}

TEST(Redact, ErrorBodiesAreRedacted) {
  EXPECT_EQ(ErrorJson("connect to ipv4:10.0.0.5:50051: refused", "server_error", "", ""),
            "{\"error\":{\"message\":\"connect to <address>: refused\",\"type\":\"server_error\","
            "\"param\":null,\"code\":null}}");
}

}  // namespace
}  // namespace r1::gw
