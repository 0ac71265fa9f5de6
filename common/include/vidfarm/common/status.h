// Errors are values: every fallible call across a room's boundary returns Status or Result<T>.
// Modelled on rocksdb::Status and arrow::Result.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace vidfarm {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,
    kCorruption,
    kIOError,
    kBusy,
    kTimedOut,
    kInvalidArgument,
    kNotSupported,
    kResourceExhausted,
    kCancelled,
    kInternal,
  };

  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, std::move(m)}; }
  static Status TimedOut(std::string m) { return {Code::kTimedOut, std::move(m)}; }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotSupported(std::string m) { return {Code::kNotSupported, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }
  static Status Cancelled(std::string m) { return {Code::kCancelled, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsCancelled() const { return code_ == Code::kCancelled; }
  bool IsIOError() const { return code_ == Code::kIOError; }

  // "InvalidArgument: frames must be positive"
  std::string ToString() const;
  static const char* CodeName(Code code);

  // Returns a copy whose message is "context: message" (keeps the code).
  Status WithContext(const std::string& context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  // A Result holds a value or an error; an OK status without a value is a bug, reported as Internal.
  Result(Status status)  // NOLINT(google-explicit-constructor)
      : v_(status.ok() ? Status::Internal("Result built from an OK Status") : std::move(status)) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T ValueOr(T fallback) const { return ok() ? std::get<T>(v_) : std::move(fallback); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<Status, T> v_;
};

#define VF_CONCAT_INNER(a, b) a##b
#define VF_CONCAT(a, b) VF_CONCAT_INNER(a, b)

#define VF_RETURN_NOT_OK(expr)                   \
  do {                                           \
    ::vidfarm::Status _vf_st = (expr);           \
    if (!_vf_st.ok()) return _vf_st;             \
  } while (0)

#define VF_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

// VF_ASSIGN_OR_RETURN(auto video, ReadVideo(path));
#define VF_ASSIGN_OR_RETURN(lhs, expr) \
  VF_ASSIGN_OR_RETURN_IMPL(VF_CONCAT(_vf_result_, __LINE__), lhs, expr)

}  // namespace vidfarm
