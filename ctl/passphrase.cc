#include "ctl/passphrase.h"

#include <fcntl.h>
#include <sodium.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "core/env.h"

namespace ferry::ctl {
namespace {

Result<std::string> Prompt(int tty, const char* text) {
  if (::write(tty, text, std::strlen(text)) < 0) return ErrnoToStatus(errno, "write to terminal");
  struct termios old_attrs, attrs;
  const bool have_attrs = ::tcgetattr(tty, &old_attrs) == 0;
  if (have_attrs) {
    attrs = old_attrs;
    attrs.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(tty, TCSAFLUSH, &attrs);
  }
  std::string out;
  char c;
  while (::read(tty, &c, 1) == 1 && c != '\n' && c != '\r') out.push_back(c);
  if (have_attrs) ::tcsetattr(tty, TCSAFLUSH, &old_attrs);
  if (::write(tty, "\n", 1) < 0) {
    // Nothing useful to do about a terminal that stopped accepting output.
  }
  return out;
}

}  // namespace

void WipeString(std::string& s) {
  if (!s.empty()) sodium_memzero(s.data(), s.size());
  s.clear();
}

Result<std::string> ReadPassphrase(const std::string& passphrase_file, bool confirm) {
  std::string pass;
  if (!passphrase_file.empty()) {
    ASSIGN_OR_RETURN(Bytes bytes, Env::Default()->ReadFile(passphrase_file, 64 * 1024));
    pass.assign(bytes.begin(), bytes.end());
    sodium_memzero(bytes.data(), bytes.size());
    // One trailing newline is not part of the passphrase (echo "..." > file).
    if (!pass.empty() && pass.back() == '\n') pass.pop_back();
    if (!pass.empty() && pass.back() == '\r') pass.pop_back();
  } else if (const char* env = std::getenv("FERRY_PASSPHRASE"); env != nullptr) {
    pass = env;
  } else {
    int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0) {
      return InvalidArgumentError(
          "a passphrase is needed: set FERRY_PASSPHRASE, pass --passphrase-file FILE, or run "
          "on a terminal");
    }
    Result<std::string> first = Prompt(tty, "Keyset passphrase: ");
    if (first.ok() && confirm) {
      Result<std::string> second = Prompt(tty, "Repeat passphrase: ");
      if (second.ok() && *second != *first) {
        ::close(tty);
        return InvalidArgumentError("the passphrases do not match");
      }
      if (second.ok()) WipeString(*second);
    }
    ::close(tty);
    if (!first.ok()) return first.status();
    pass = std::move(*first);
  }
  if (pass.empty()) return InvalidArgumentError("the passphrase is empty");
  return pass;
}

}  // namespace ferry::ctl
