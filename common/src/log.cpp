#include "vidfarm/common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

namespace vidfarm {
namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv("VIDFARM_LOG");
  if (env == nullptr) return LogLevel::kInfo;
  std::string v(env);
  if (v == "debug") return LogLevel::kDebug;
  if (v == "warn") return LogLevel::kWarn;
  if (v == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

std::atomic<int>& LevelStore() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}

}  // namespace

LogLevel GetLogLevel() { return static_cast<LogLevel>(LevelStore().load()); }
void SetLogLevel(LogLevel level) { LevelStore().store(static_cast<int>(level)); }

void LogLine(LogLevel level, std::string_view message) {
  static std::mutex mu;
  static const char kTag[] = {'D', 'I', 'W', 'E'};
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  localtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "[%s.%03d %c] %.*s\n", stamp, ms, kTag[static_cast<int>(level)],
               static_cast<int>(message.size()), message.data());
}

}  // namespace vidfarm
