#pragma once
/// \file simulate_ssp.hpp
/// \brief `cubeflow simulate ssp`: describes an SSP set and, for the `emiles` set, measures and
/// draws the join of E-MILES and its young extension (docs/forward_model.md).

#include <string>

namespace cubeflow::tools {

struct SspReportOptions {
  std::string ssp = "emiles";          ///< builtin, emiles or a directory
  std::string emiles_dir, maraston_dir;  ///< for emiles; empty: under $CUBEFLOW_DATA_DIR/ssp
  std::string bc03_dir;                ///< BC03 set for the figure's line comparison (optional)
  double join_age_gyr = 0.03, anchor_age_gyr = 0.025, young_min_age_gyr = 0.0063;
  std::string figure;                  ///< PNG path; empty = no figure
};

/// Prints the report to stdout (and writes the figure); 0 on success, 2 on bad input.
int SimulateSspReport(const SspReportOptions& options);

}  // namespace cubeflow::tools
