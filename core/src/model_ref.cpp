// ModelRef and the shipped-model directories (value.hpp).
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <boost/dll/runtime_symbol_info.hpp>

#include "cubeflow/value.hpp"

namespace fs = std::filesystem;

namespace cubeflow {

bool ModelRef::IsName(const std::string& text) {
  if (text.empty()) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

ModelRef ModelRef::Parse(const std::string& text) {
  ModelRef m;
  m.text = text;
  m.kind = (text.empty() || IsName(text)) ? Kind::kShipped : Kind::kPath;
  return m;
}

std::string ModelRef::File() const {
  if (kind == Kind::kPath) return text;
  std::error_code ec;
  for (const auto& d : ShippedModelDirs()) {
    const fs::path f = fs::path(d) / (text + ".pt");
    if (fs::is_regular_file(f, ec)) return f.string();
  }
  return "";
}

std::vector<std::string> ShippedModelDirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("CUBEFLOW_MODEL_DIR"); env && *env) dirs.emplace_back(env);
  boost::system::error_code ec;
  const auto self = boost::dll::this_line_location(ec);  // libcubeflow_core.so
  if (!ec) {
    const fs::path prefix = fs::path(self.string()).parent_path().parent_path();
    dirs.push_back((prefix / "share" / "cubeflow" / "models").lexically_normal().string());
  }
  return dirs;
}

std::vector<std::string> ShippedModelNames() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& d : ShippedModelDirs()) {
    for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path p = it->path();
      if (p.extension() == ".pt" && it->is_regular_file(ec)) names.push_back(p.stem().string());
    }
    ec.clear();
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

}  // namespace cubeflow
