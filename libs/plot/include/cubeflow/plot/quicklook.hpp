#pragma once
/// \file quicklook.hpp
/// \brief Quicklook PNGs of a MAPS product (what `cubeflow plot` writes):
///
/// * `<prefix>_maps.png`: LW / MW mean log age and [Z/H] maps (2 x 2, like Fig. 13 of
///   Galceran et al. 2026) with colour bars and sky axes, plus the S/N and bin maps when present;
/// * `<prefix>_maps_err.png`: their uncertainties (`<NAME>_ERR`, or half the 16-84 % width
///   from `<NAME>_P16` / `<NAME>_P84`) when the file has any;
/// * `<prefix>_sfh_bin<ID>.png` per chosen bin: mass fraction per age bin, cumulative mass
///   assembly (t50, t90), [Z/H] per age bin, each with uncertainties when present, and where
///   the bin lies on the map; LW / MW values in the title.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cubeflow/data.hpp"
#include "cubeflow/plot/figure.hpp"
#include "cubeflow/status.hpp"

namespace cubeflow::plot {

struct QuicklookOptions {
  std::string out_dir;   ///< "" = the directory of the MAPS file (created if missing)
  std::string prefix;    ///< "" = the file's stem without a trailing "_maps" / "-maps"
  std::vector<int64_t> bins;                          ///< SFH plots of these bins
  std::vector<std::pair<double, double>> positions;   ///< ... and of the bins at these 0-based pixels
  bool sfh = true;       ///< SFH plots (of the highest-S/N bin when no bin or position is given)
  bool age_gyr = false;  ///< age maps in Gyr instead of log10(age/yr)
  bool sky_axes = true;  ///< RA / Dec axes when the maps carry a celestial WCS
  SkyFormat sky_format = SkyFormat::kSexagesimal;
  /// Spaxels whose QUALITY has any of these bits are drawn in the NaN colour.
  uint32_t mask_bits = kQualNoCoverage | kQualInferenceFailed;
  int cell_width = 560, cell_height = 440;  ///< pixels per panel (map figures fit the height to the maps)
};

struct QuicklookResult {
  std::vector<std::string> written;  ///< PNG paths, in the order written
  std::vector<std::string> missing;  ///< expected extensions / columns the file lacks
  std::vector<std::string> notes;    ///< what was left out or assumed, one sentence each
  std::vector<int64_t> sfh_bins;     ///< bins with an SFH plot
  /// Layout of the panels of `<prefix>_maps.png` and the extension each one shows.
  std::vector<PanelLayout> maps_layout;
  std::vector<std::string> maps_panels;
};

/// Parses a quality-bit list: "default" (NOCOV,FAILED), "none", "all", or comma-separated
/// bit names (NOCOV, LOWSNR, BROADTGT, NONPOSPHOT, OUTTRAIN, FAILED) and/or integers.
Result<uint32_t> ParseQualityMask(const std::string& text);

/// Writes the quicklooks of a MAPS file. Fails, writing nothing, if the file cannot be read,
/// is not a MAPS product, or a requested bin / position does not exist; what is merely missing
/// (e.g. no MW maps, no MASS_FRAC) is listed in the result and the rest is plotted.
Result<QuicklookResult> WriteMapsQuicklooks(const std::string& maps_path, const QuicklookOptions& options = {});

}  // namespace cubeflow::plot
