// checkpoint::Store: what one run appends, the next (--resume) finds; a torn last record is cut
// off; a run without --resume starts empty.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "checkpoint.hpp"  // core/src: the runtime's own header
#include "cubeflow/data.hpp"

namespace cubeflow::checkpoint {
namespace {

std::shared_ptr<const Data> MakeRecord(int64_t id, double value) {
  auto r = std::make_shared<Record>();
  r->id = id;
  r->Set("lw_age", value, "log yr");
  return r;
}

double ValueOf(const std::vector<Emission>& e) {
  return static_cast<const Record&>(*e.at(0).data).fields.at("lw_age").values.at(0);
}

std::string Key(int i) {
  Hasher h;
  h.U64(static_cast<uint64_t>(i));
  return h.Digest();
}

TEST(CheckpointStore, ResumeFindsWhatWasAppendedAndCutsATornTail) {
  const auto dir = std::filesystem::temp_directory_path() / ("cubeflow_ckpt_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "node.ckpt").string();
  {
    auto s = Store::Open(path, false);
    ASSERT_TRUE(s.ok()) << s.status().message();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*s)->Append(Key(i), {{"results", MakeRecord(i, 9.0 + i)}}).ok());
  }
  const auto whole = std::filesystem::file_size(path);
  {
    std::ofstream tail(path, std::ios::binary | std::ios::app);
    tail << "CFCK" << std::string(30, 'x');  // a record cut short by SIGKILL
  }
  {
    auto s = Store::Open(path, true);
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_EQ((*s)->entries(), 5u);
    EXPECT_EQ(std::filesystem::file_size(path), whole) << "the torn record must be cut off";
    std::vector<Emission> found;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE((*s)->Find(Key(i), found)) << i;
      ASSERT_EQ(found.size(), 1u);
      EXPECT_EQ(found[0].port, "results");
      EXPECT_EQ(ValueOf(found), 9.0 + i);
    }
    EXPECT_FALSE((*s)->Find(Key(7), found));
    ASSERT_TRUE((*s)->Append(Key(7), {{"results", MakeRecord(7, 1.5)}}).ok());  // after the cut
  }
  {
    auto s = Store::Open(path, true);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ((*s)->entries(), 6u);
    std::vector<Emission> found;
    ASSERT_TRUE((*s)->Find(Key(7), found));
    EXPECT_EQ(ValueOf(found), 1.5);
  }
  {
    auto s = Store::Open(path, false);  // no --resume: start afresh
    ASSERT_TRUE(s.ok());
    EXPECT_EQ((*s)->entries(), 0u);
    EXPECT_EQ(std::filesystem::file_size(path), 0u);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cubeflow::checkpoint
