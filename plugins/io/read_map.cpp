// io.read_map
#include <cmath>
#include <sstream>

#include "cubeflow/fits/image_io.hpp"
#include "cubeflow/fits/wcs.hpp"
#include "io_nodes.hpp"

namespace cubeflow::io {

NodeSpec ReadMapNode::Spec() {
  return NodeSpec("io.read_map", "Read one 2-D image extension of a FITS file as a map")
      .Describe(
          "Reads a 2-D image HDU (e.g. V_STARS / SIGMA_STARS of a kinematics file, for "
          "spectral.restframe's velocity/dispersion inputs) into a map with its celestial WCS. "
          "Blank pixels (NaN, or BLANK for integer images) become NaN; BSCALE/BZERO are applied. "
          "A 3-D image whose extra axes have length 1 counts as 2-D. With `grid` connected (a "
          "binning, e.g. from binning.voronoi), the map must lie on the same spatial grid: same "
          "size and, when both have a WCS, the same sky position of the corner and centre pixels "
          "to 0.05 pixel; otherwise the run stops saying how they differ.")
      .OptionalInput("grid", Binning::kType, PortKind::kSingle,
                     "binning whose spatial grid (nx, ny, WCS) the map must match (check only)")
      .Output("map", Map::kType, PortKind::kSingle, "the image (plane 0), its WCS, BUNIT and name")
      .Param(&Options::path, "path", "FITS file to read", Required{})
      .Param(&Options::extension, "extension",
             "HDU to read: EXTNAME (e.g. V_STARS), or number (0 = primary); auto = the "
             "first HDU holding a 2-D image")
      .Param(&Options::bunit, "bunit", "unit to record instead of the file's BUNIT (\"\" = BUNIT)")
      .Param(&Options::name, "name", "map name (EXTNAME in products; \"\" = the HDU's EXTNAME, or MAP for the primary)")
      .Concurrent(Concurrency::kSerial);
}

ReadMapNode::ReadMapNode(const Options& o)
    : path_(o.path.string()), extension_(o.extension), bunit_(o.bunit), name_(o.name) {}

std::string CompareGrids(const Map& map, const Binning& grid, double tol_pix) {
  std::ostringstream m;
  if (map.nx != grid.nx || map.ny != grid.ny) {
    m << "map is " << map.nx << "x" << map.ny << " spaxels but the grid (binning) is " << grid.nx << "x"
      << grid.ny;
    return m.str();
  }
  if (map.wcs.empty() || grid.wcs.empty()) return "";
  auto mw = fits::Wcs::FromCards(map.wcs);
  auto gw = fits::Wcs::FromCards(grid.wcs);
  if (!mw.ok()) return "the map's WCS is unusable: " + mw.status().message();
  if (!gw.ok()) return "";  // nothing to compare against
  const double xs[] = {0.0, static_cast<double>(map.nx - 1), 0.5 * static_cast<double>(map.nx - 1)};
  const double ys[] = {0.0, static_cast<double>(map.ny - 1), 0.5 * static_cast<double>(map.ny - 1)};
  for (int i = 0; i < 3; ++i) {
    double ra = 0, dec = 0, x = 0, y = 0;
    try {
      gw->PixelToSky(xs[i], ys[i], ra, dec);
      mw->SkyToPixel(ra, dec, x, y);
    } catch (const std::exception& e) {
      return std::string("cannot compare the WCSs: ") + e.what();
    }
    if (std::hypot(x - xs[i], y - ys[i]) > tol_pix) {
      m.precision(4);
      m << "grid pixel (" << xs[i] << ", " << ys[i] << ") falls on map pixel (" << x << ", " << y
        << "): the map is not on the cube's spatial grid (different WCS); reproject it first";
      return m.str();
    }
  }
  return "";
}

void ReadMapNode::Process(ProcessContext& ctx) {
  std::shared_ptr<Map> map = fits::ReadMap(path_, extension_, bunit_, name_).ValueOrThrow();
  size_t finite = 0;
  for (double v : map->data) finite += std::isfinite(v) ? 1 : 0;
  std::ostringstream msg;
  msg << "read " << path_ << " [" << map->header["SRCHDU"] << "]: " << map->nx << " x " << map->ny << ", "
      << finite << " finite pixels, BUNIT '" << map->bunit << "'" << (map->wcs.empty() ? ", no WCS" : "");
  ctx.Log(LogLevel::kInfo, msg.str());
  if (finite == 0) ctx.Log(LogLevel::kWarn, path_ + " [" + map->header["SRCHDU"] + "]: every pixel is NaN/blank");
  if (auto grid = ctx.OptionalInput<Binning>("grid")) {
    const std::string problem = CompareGrids(*map, *grid);
    if (!problem.empty())
      throw Error(path_ + " [" + map->header["SRCHDU"] + "]: " + problem);
  }
  ctx.Emit("map", std::move(map));
}

}  // namespace cubeflow::io
