// WriteFileAtomic: whole-file replacement through a temporary file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cubeflow/atomic_file.hpp"

namespace cubeflow {
namespace {

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(AtomicFile, WritesReplacesAndLeavesNoTemporary) {
  const auto dir = std::filesystem::temp_directory_path() / ("cubeflow_atomic_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "out.json").string();
  ASSERT_TRUE(WriteFileAtomic(path, "first").ok());
  EXPECT_EQ(Slurp(path), "first");
  const std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(WriteFileAtomic(path, binary).ok());
  EXPECT_EQ(Slurp(path), binary);
  ASSERT_TRUE(WriteFileAtomic(path, "").ok());
  EXPECT_EQ(std::filesystem::file_size(path), 0u);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
  EXPECT_EQ(files, 1);
  // A directory that does not exist: the error names the file and says what to check.
  const std::string bad = (dir / "missing" / "out.json").string();
  const Status st = WriteFileAtomic(bad, "x");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(bad), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("directory exists"), std::string::npos) << st.message();
  // A target that cannot be replaced (a directory of that name): the old entry stays, the
  // temporary file is removed.
  const auto blocked = dir / "blocked";
  std::filesystem::create_directories(blocked / "keep");
  ASSERT_FALSE(WriteFileAtomic(blocked.string(), "x").ok());
  EXPECT_TRUE(std::filesystem::is_directory(blocked / "keep"));
  EXPECT_FALSE(std::filesystem::exists(blocked.string() + ".tmp-" + std::to_string(::getpid())));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cubeflow
