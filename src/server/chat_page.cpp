#include "server/server.h"

namespace jinx::server {

const std::string& chat_page_html() {
  // src/server/assets/chat.html, embedded by CMake as a raw string literal.
  static const std::string page =
#include "chat_page.inc"
      ;
  return page;
}

}  // namespace jinx::server
