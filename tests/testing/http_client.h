// A small blocking HTTP/1.1 client for tests that talk to a real ferry-hub
// on loopback (Boost.Beast), and a raw-bytes sender for malformed requests.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace ferry::testing {

struct HttpResult {
  int status = 0;                              // 0: no response (connection failed or closed)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;  // why there is no response
};

// One request on a new connection to 127.0.0.1:`port`. `bearer` adds
// "Authorization: Bearer <bearer>" when not empty.
HttpResult HttpRequest(uint16_t port, const std::string& method, const std::string& target,
                       const std::string& body = "", const std::string& bearer = "",
                       const std::string& content_type = "application/json");

// Writes `raw` as is and returns whatever comes back until the server closes
// or `timeout_ms` passes (the status line is parsed when there is one).
HttpResult RawRequest(uint16_t port, const std::string& raw, int timeout_ms = 5000);

}  // namespace ferry::testing
