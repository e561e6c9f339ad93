#pragma once
// Helpers of the io.write_spectra tests (test_write_spectra.cpp, test_ngist_spectra.cpp): the
// public test double with a call that feeds one stream item, and the shared FITS reader.
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "cubeflow/node.hpp"
#include "cubeflow/testing/fake_context.hpp"
#include "fits_reader.hpp"
#include "node_test_util.hpp"

namespace spectest {

using namespace cubeflow;
using cftest::FitsFile;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// cubeflow::testing::FakeContext that feeds a node's `spectra` stream one bin per call.
class SinkContext : public cubeflow::testing::FakeContext {
 public:
  SinkContext() : cubeflow::testing::FakeContext("spec", "io.write_spectra") {}

  /// Calls node.Process with one item keyed `key`: the spectrum `data` on port `spectra`, or,
  /// when `data` is null, a failure upstream with `failure`. What the call emitted stays in
  /// Emitted() until the next Send.
  void Send(Node& node, int64_t key, std::shared_ptr<const Data> data, const std::string& failure = "") {
    ClearItems();
    if (data)
      AddItem(key, {{"spectra", std::move(data)}});
    else
      AddFailedItem(key, failure.empty() ? std::string("failed upstream") : failure);
    node.Process(*this);
  }
};

}  // namespace spectest
