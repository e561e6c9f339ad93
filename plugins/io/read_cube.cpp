// io.read_cube
#include <sstream>

#include "cubeflow/cube_blocks.hpp"
#include "cubeflow/strings.hpp"
#include "io_nodes.hpp"

namespace cubeflow::io {

NodeSpec ReadCubeNode::Spec() {
  return NodeSpec("io.read_cube", "Read a spectral cube (MUSE-style FITS: DATA, STAT, DQ extensions)")
      .Describe(
          "Reads the flux (and variance / data-quality, when present) of a FITS cube, only the "
          "channels inside [wave_min, wave_max]. Handles CD or CDELT/PC keywords, CTYPE3 AWAV/WAVE "
          "(air/vacuum) and -LOG axes; single-HDU cubes are read from the primary HDU. A cube whose "
          "channels (flux + variance) take more than max_memory MiB is not read into memory: the "
          "output is a lazy cube (header, WCS, wavelength axis and a reader of the file) that "
          "spectral.snr_map and binning.voronoi read in blocks of rows, with memory independent of "
          "the number of spaxels; the header, the window and the extensions are checked here either way.")
      .Output("cube", Cube::kType, PortKind::kSingle, "the cube (flux, variance, mask, wavelength axis, WCS)")
      .Param(&Options::path, "path", "FITS cube to read", Required{})
      .Param(&Options::wave_min, "wave_min", "first wavelength to read (0 = start)", Unit{"Angstrom"}, AtLeast{0})
      .Param(&Options::wave_max, "wave_max", "last wavelength to read (0 = end)", Unit{"Angstrom"}, AtLeast{0})
      .Param(&Options::data_hdu, "data_hdu", "extension holding the flux")
      .Param(&Options::stat_hdu, "stat_hdu", "extension holding the variance (\"\" = none)")
      .Param(&Options::require_stat, "require_stat", "fail if the variance extension is missing")
      .Param(&Options::max_memory, "max_memory",
             "largest cube (flux + variance of the window) read into memory; larger ones are streamed (0 = always)",
             Unit{"MiB"}, AtLeast{0})
      .Param(&Options::block_size, "block_size",
             "a streamed cube is read in blocks of whole rows x all channels of at most this size", Unit{"MiB"},
             AtLeast{1})
      .Check<Options>([](const Options& o, CheckReport& r) {
        if (o.wave_min > 0 && o.wave_max > 0 && o.wave_min >= o.wave_max)
          r.Error("wave_max", "must be above wave_min (" + Num(o.wave_min) + " Angstrom), got " + Num(o.wave_max) +
                                  ": the window [wave_min, wave_max] is empty; set wave_min < wave_max (0 = no limit)");
      })
      .Concurrent(Concurrency::kSerial);
}

ReadCubeNode::ReadCubeNode(const Options& o)
    : path_(o.path.string()), block_bytes_(static_cast<size_t>(o.block_size) << 20) {
  options_.wave_min = o.wave_min;
  options_.wave_max = o.wave_max;
  options_.data_hdu = o.data_hdu;
  options_.stat_hdu = o.stat_hdu;
  options_.require_stat = o.require_stat;
  options_.lazy_above_bytes = static_cast<uint64_t>(o.max_memory) << 20;
}

void ReadCubeNode::Process(ProcessContext& ctx) {
  std::vector<std::string> warnings;
  std::shared_ptr<Cube> cube = fits::ReadCube(path_, options_, &warnings).ValueOrThrow();
  for (const auto& w : warnings) ctx.Log(LogLevel::kWarn, w);
  if (auto* lazy = dynamic_cast<LazyCube*>(cube.get())) lazy->block_bytes = block_bytes_;
  std::ostringstream msg;
  msg << "read " << path_ << ": " << cube->nx << " x " << cube->ny << " x " << cube->nwave << " ("
      << cube->wave.At(0) << " - " << cube->wave.At(cube->nwave - 1) << " Angstrom, "
      << (CubeHasVariance(*cube) ? "with variance" : "no variance") << ")"
      << (AsLazy(*cube) ? ", streamed from the file (above max_memory)" : "");
  ctx.Log(LogLevel::kInfo, msg.str());
  if (!CubeHasVariance(*cube) && !options_.stat_hdu.empty())
    ctx.Log(LogLevel::kWarn, "no variance extension '" + options_.stat_hdu + "' in " + path_);
  ctx.Emit("cube", std::move(cube));
}

}  // namespace cubeflow::io
