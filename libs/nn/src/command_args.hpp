#pragma once
// Internal (not installed): the command-line arguments of `cubeflow evaluate` (CNN and SBI):
// options with checked values, positional arguments, and the errors that name the option.

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cubeflow/status.hpp"

namespace cubeflow::nn {

/// \brief Walks argv[1..]: `Next()` moves to the next argument, the value readers consume the
/// argument after an option.
class ArgReader {
 public:
  ArgReader(int argc, char** argv) : argc_(argc), argv_(argv) {}

  /// Moves to the next argument; false after the last.
  bool Next() { return ++i_ < argc_; }
  /// The current argument.
  std::string arg() const { return argv_[i_]; }
  /// Whether the current argument is an option (starts with '-').
  bool IsOption() const { return argv_[i_][0] == '-'; }

  /// The value after the current option.
  Result<std::string> Value() {
    if (i_ + 1 >= argc_) return Status::Error("option " + arg() + " needs a value");
    ++i_;
    return std::string(argv_[i_]);
  }
  /// A number after the current option.
  Status Number(double* out) {
    const std::string option = arg();
    CUBEFLOW_ASSIGN_OR_RETURN(std::string v, Value());
    char* end = nullptr;
    *out = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end) return Status::Error("option " + option + ": '" + v + "' is not a number");
    return Status::OK();
  }
  /// A whole number after the current option.
  template <typename Int>
  Status Integer(Int* out) {
    const std::string option = arg();
    double x = 0;
    CUBEFLOW_RETURN_NOT_OK(Number(&x));
    if (x != std::floor(x)) return Status::Error("option " + option + ": '" + argv_[i_] + "' is not a whole number");
    *out = static_cast<Int>(x);
    return Status::OK();
  }
  /// An unsigned 64-bit number (a seed) after the current option.
  Status Unsigned(uint64_t* out) {
    const std::string option = arg();
    CUBEFLOW_ASSIGN_OR_RETURN(std::string v, Value());
    char* end = nullptr;
    errno = 0;
    *out = std::strtoull(v.c_str(), &end, 10);
    if (end == v.c_str() || *end || errno || v[0] == '-')
      return Status::Error("option " + option + ": '" + v + "' is not a non-negative whole number");
    return Status::OK();
  }
  /// A comma-separated list of positive numbers after the current option (`example` for the
  /// message, e.g. "5,10,20").
  Status PositiveList(std::vector<double>* out, const std::string& example) {
    const std::string option = arg();
    CUBEFLOW_ASSIGN_OR_RETURN(std::string v, Value());
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      const double x = std::strtod(item.c_str(), &end);
      if (end == item.c_str() || *end || !(x > 0))
        return Status::Error(option + ": '" + item + "' is not a positive number (give e.g. " + example + ")");
      out->push_back(x);
    }
    return Status::OK();
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
};

/// The exit code of `cubeflow NAME` from its parsed options (with a `help` flag) and its run: an
/// argument error is printed with the usage (2), --help prints the usage on stdout (0), a failed
/// run prints its error (1).
template <typename Options>
int RunCommand(const std::string& name, const char* usage, const Result<Options>& options,
               const std::function<Status(const Options&)>& run) {
  if (!options.ok()) {
    std::cerr << "cubeflow " << name << ": " << options.status().message() << "\n" << usage;
    return 2;
  }
  if (options->help) {
    std::cout << usage;
    return 0;
  }
  Status st = run(*options);
  if (!st.ok()) {
    std::cerr << "cubeflow " << name << ": " << st.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace cubeflow::nn
