// Minimal leveled logging to stderr: "[2026-11-21 05:40:01.123 W] message".
// Level from VIDFARM_LOG (debug|info|warn|error), default info.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace vidfarm {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

LogLevel GetLogLevel();
void SetLogLevel(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (level < GetLogLevel()) return;
  LogLine(level, fmt::format(f, std::forward<Args>(args)...));
}

#define VF_LOG_DEBUG(...) ::vidfarm::Log(::vidfarm::LogLevel::kDebug, __VA_ARGS__)
#define VF_LOG_INFO(...) ::vidfarm::Log(::vidfarm::LogLevel::kInfo, __VA_ARGS__)
#define VF_LOG_WARN(...) ::vidfarm::Log(::vidfarm::LogLevel::kWarn, __VA_ARGS__)
#define VF_LOG_ERROR(...) ::vidfarm::Log(::vidfarm::LogLevel::kError, __VA_ARGS__)

}  // namespace vidfarm
