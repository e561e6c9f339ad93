#pragma once
/// \file status.hpp
/// \brief Error values for configuration and loading code (Arrow-style Status / Result<T>).
///
/// Node bodies may throw; everything that validates or loads returns a Status or a Result.

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace cubeflow {

/// \brief Success, or an error message saying what failed and how to fix it.
class Status {
 public:
  Status() = default;
  static Status OK() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !message_.has_value(); }
  const std::string& message() const {
    static const std::string kEmpty;
    return message_ ? *message_ : kEmpty;
  }
  /// Throws cubeflow::Error if not ok.
  void ThrowIfError() const;

 private:
  explicit Status(std::string m) : message_(std::move(m)) {}
  std::optional<std::string> message_;
};

/// \brief Exception type used by node bodies and thrown by Status::ThrowIfError.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline void Status::ThrowIfError() const {
  if (!ok()) throw Error(*message_);
}

/// \brief A value or an error Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) {     // NOLINT(implicit)
    if (std::get<Status>(v_).ok()) v_ = Status::Error("internal: Result built from an OK status");
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& operator*() & { return std::get<T>(v_); }
  const T& operator*() const& { return std::get<T>(v_); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  /// Moves the value out, throwing cubeflow::Error on failure.
  T ValueOrThrow() && {
    if (!ok()) throw Error(std::get<Status>(v_).message());
    return std::move(std::get<T>(v_));
  }

 private:
  std::variant<T, Status> v_;
};

}  // namespace cubeflow

#define CUBEFLOW_CONCAT_IMPL(a, b) a##b
#define CUBEFLOW_CONCAT(a, b) CUBEFLOW_CONCAT_IMPL(a, b)

#define CUBEFLOW_RETURN_NOT_OK(expr)              \
  do {                                            \
    ::cubeflow::Status _cf_st = (expr);           \
    if (!_cf_st.ok()) return _cf_st;              \
  } while (0)

#define CUBEFLOW_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(*tmp)

#define CUBEFLOW_ASSIGN_OR_RETURN(lhs, expr) \
  CUBEFLOW_ASSIGN_OR_RETURN_IMPL(CUBEFLOW_CONCAT(_cf_res_, __LINE__), lhs, expr)
