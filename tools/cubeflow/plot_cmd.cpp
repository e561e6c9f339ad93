// `cubeflow plot MAPS.fits ...`: quicklook PNGs of a MAPS product (see docs/plot.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "cubeflow/plot/quicklook.hpp"

namespace cubeflow::tools {

int PlotCommand(int argc, char** argv) {
  using namespace cubeflow;
  using namespace cubeflow::plot;
  CLI::App app{"Quicklook PNGs of a MAPS product: LW/MW age and [Z/H] maps with sky axes, their uncertainties, "
               "and the star-formation and metallicity history of chosen bins",
               "cubeflow plot"};
  std::string maps, out, prefix, age = "log", sky = "sexagesimal", mask = "default";
  std::vector<int64_t> bins;
  std::vector<std::string> positions;
  bool no_sfh = false;
  int width = 560, height = 440;
  app.add_option("MAPS", maps, "MAPS FITS file written by io.write_maps")->required();
  app.add_option("--out", out, "output directory (default: the MAPS file's directory)");
  app.add_option("--prefix", prefix, "file-name prefix (default: the MAPS file's stem without _maps)");
  app.add_option("--bin", bins, "SFH plot of this bin id (repeatable)")
      ->allow_extra_args(false)  // one value per occurrence: `--pos 3,4 maps.fits` keeps maps.fits
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--pos", positions, "SFH plot of the bin at 0-based pixel X,Y (repeatable)")
      ->allow_extra_args(false)  // one value per occurrence: `--pos 3,4 maps.fits` keeps maps.fits
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--no-sfh", no_sfh, "no SFH plot (by default: the highest-S/N bin)");
  app.add_option("--age", age, "age maps as log (log10(age/yr)) or gyr")->check(CLI::IsMember({"log", "gyr"}));
  app.add_option("--sky", sky, "map axes: sexagesimal, degrees or pixels")
      ->check(CLI::IsMember({"sexagesimal", "degrees", "pixels"}));
  app.add_option("--mask", mask,
                 "quality bits drawn as masked: default (NOCOV,FAILED), none, all, or a list like "
                 "NOCOV,FAILED,OUTTRAIN");
  app.add_option("--panel-size", width, "panel width in pixels (height scales with it)")->check(CLI::Range(200, 2000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; usage errors: 2
  }
  height = width * 440 / 560;

  QuicklookOptions o;
  o.out_dir = out;
  o.prefix = prefix;
  o.bins = bins;
  for (const auto& p : positions) {
    double x = 0, y = 0;
    char extra = 0;
    if (std::sscanf(p.c_str(), " %lf , %lf %c", &x, &y, &extra) != 2) {
      std::cerr << "cubeflow plot: error: --pos '" << p << "' is not X,Y (0-based pixel, e.g. --pos 12,30)\n";
      return 2;
    }
    o.positions.emplace_back(x, y);
  }
  o.sfh = !no_sfh;
  o.age_gyr = age == "gyr";
  o.sky_axes = sky != "pixels";
  o.sky_format = sky == "degrees" ? SkyFormat::kDegrees : SkyFormat::kSexagesimal;
  auto bits = ParseQualityMask(mask);
  if (!bits.ok()) {
    std::cerr << "cubeflow plot: error: --mask: " << bits.status().message() << "\n";
    return 2;
  }
  o.mask_bits = *bits;
  o.cell_width = width;
  o.cell_height = height;

  auto r = WriteMapsQuicklooks(maps, o);
  if (!r.ok()) {
    std::cerr << "cubeflow plot: error: " << r.status().message() << "\n";
    return 1;
  }
  if (!r->missing.empty()) {
    std::string m;
    for (const auto& s : r->missing) m += (m.empty() ? "" : ", ") + s;
    std::cerr << "cubeflow plot: not in " << maps << ": " << m << " (plotted what exists)\n";
  }
  for (const auto& n : r->notes) std::cerr << "cubeflow plot: note: " << n << "\n";
  for (const auto& w : r->written) std::cout << w << "\n";
  return r->written.empty() ? 1 : 0;
}

}  // namespace cubeflow::tools
