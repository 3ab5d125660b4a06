// Error bodies go to whoever called the gateway; gRPC's messages name the worker they failed
// to reach ("ipv4:10.0.3.7:50051: Connection refused"). RedactAddresses() replaces network
// addresses in a message with "<address>" so that no internal address leaves the gateway.
#pragma once

#include <string>
#include <string_view>

namespace r1::gw {

// Replaces, in words delimited by spaces, quotes, commas, semicolons, parentheses and the
// like: gRPC address URIs (ipv4:..., ipv6:..., unix:..., unix-abstract:..., dns:..., vsock:...),
// IPv4 addresses with or without a port, bracketed IPv6 addresses with or without a port, and
// NAME:PORT (a host name with a numeric port).
std::string RedactAddresses(std::string_view message);

}  // namespace r1::gw
