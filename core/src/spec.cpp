#include "cubeflow/spec.hpp"

#include <cmath>
#include <sstream>

#include "cubeflow/data.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow {

Data::~Data() = default;

const char* ParamTypeName(ParamType t) {
  switch (t) {
    case ParamType::kBool: return "bool";
    case ParamType::kInt: return "int";
    case ParamType::kDouble: return "double";
    case ParamType::kString: return "string";
    case ParamType::kPath: return "path";
    case ParamType::kModel: return "model";
    case ParamType::kDoubleList: return "list of double";
    case ParamType::kIntList: return "list of int";
    case ParamType::kStringList: return "list of string";
  }
  return "?";
}

namespace {
std::string FormatDouble(double d) {
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) {
    std::ostringstream os;
    os << static_cast<long long>(d);
    return os.str();
  }
  std::ostringstream os;
  os.precision(10);
  os << d;
  return os.str();
}
template <typename T, typename F>
std::string FormatList(const std::vector<T>& v, F f) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + f(v[i]);
  return s + "]";
}
}  // namespace

std::string FormatValue(const Value& v) {
  struct V {
    std::string operator()(std::monostate) const { return "null"; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return FormatDouble(d); }
    std::string operator()(const std::string& s) const { return s; }
    std::string operator()(const std::vector<double>& l) const { return FormatList(l, FormatDouble); }
    std::string operator()(const std::vector<int64_t>& l) const {
      return FormatList(l, [](int64_t i) { return std::to_string(i); });
    }
    std::string operator()(const std::vector<std::string>& l) const {
      return FormatList(l, [](const std::string& s) { return s; });
    }
  };
  return std::visit(V{}, v);
}

std::string ParamSpec::Brief() const {
  std::string s = name_ + " (" + ParamTypeName(type_);
  if (!unit_.empty()) s += ", " + unit_;
  if (required_) {
    s += ", required";
  } else {
    std::string d = FormatValue(default_);
    s += ", default " + (d.empty() ? std::string("\"\"") : d);
  }
  return s + ")";
}

std::string CheckReport::ErrorText() const {
  std::string s;
  for (const auto& i : issues_) {
    if (!i.is_error) continue;
    if (!s.empty()) s += "; ";
    s += (i.param.empty() ? "" : i.param + ": ") + i.message;
  }
  return s;
}

CheckReport NodeSpec::RunChecks(const Params& params) const {
  CheckReport r;
  for (const auto& c : checks_) c(*this, params, r);
  return r;
}

const PortSpec* NodeSpec::FindInput(const std::string& n) const {
  for (const auto& p : inputs_) if (p.name == n) return &p;
  return nullptr;
}
const PortSpec* NodeSpec::FindOutput(const std::string& n) const {
  for (const auto& p : outputs_) if (p.name == n) return &p;
  return nullptr;
}
const ParamSpec* NodeSpec::FindParam(const std::string& n) const {
  for (const auto& p : params_) if (p.name() == n) return &p;
  return nullptr;
}
bool NodeSpec::IsPerItem() const {
  for (const auto& p : inputs_) if (p.kind == PortKind::kStream) return true;
  return false;
}

bool Params::Has(const std::string& name) const {
  auto it = values_.find(name);
  return it != values_.end() && !std::holds_alternative<std::monostate>(it->second);
}

const Value& Params::At(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw Error("no parameter named '" + name + "' (not declared in the node's spec)");
  return it->second;
}

namespace {
template <typename T>
const T& GetAs(const Value& v, const std::string& name, const char* want) {
  if (const T* p = std::get_if<T>(&v)) return *p;
  throw Error("parameter '" + name + "' is not a " + want + " (value " + FormatValue(v) + ")");
}
}  // namespace

bool Params::GetBool(const std::string& name) const { return GetAs<bool>(At(name), name, "bool"); }
int64_t Params::GetInt(const std::string& name) const { return GetAs<int64_t>(At(name), name, "int"); }
double Params::GetDouble(const std::string& name) const {
  const Value& v = At(name);
  if (const int64_t* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return GetAs<double>(v, name, "double");
}
const std::string& Params::GetString(const std::string& name) const {
  return GetAs<std::string>(At(name), name, "string");
}
const std::vector<double>& Params::GetDoubleList(const std::string& name) const {
  return GetAs<std::vector<double>>(At(name), name, "list of double");
}
const std::vector<int64_t>& Params::GetIntList(const std::string& name) const {
  return GetAs<std::vector<int64_t>>(At(name), name, "list of int");
}
const std::vector<std::string>& Params::GetStringList(const std::string& name) const {
  return GetAs<std::vector<std::string>>(At(name), name, "list of string");
}

}  // namespace cubeflow
