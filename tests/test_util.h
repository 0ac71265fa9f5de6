// Helpers shared by the test binaries: a temporary directory, and running a command the way a
// user's shell would (for the tests that drive the real `vidfarm` binary and ffmpeg/ffprobe).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace vidfarm::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at the end.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "vidfarm") {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "_XXXXXX";
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    if (keep_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string db() const { return path_ + "/db"; }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  // Leave the directory behind (for a failed test's logs).
  void Keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

// 'it'\''s' — a single-quoted shell word.
inline std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct CommandResult {
  int code = -1;     // exit status, -1 if it did not exit normally
  std::string out;   // standard output and standard error together
};

// Runs `cmd` with /bin/sh, capturing stdout and stderr.
inline CommandResult RunCommand(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace vidfarm::testing
