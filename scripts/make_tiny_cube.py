#!/usr/bin/python3
"""Writes cubes/tiny_cube.fits: a small synthetic MUSE-like cube (DATA + STAT) for tests and
examples. 9 x 8 spaxels x 480 channels (4750-5348.75 A, 1.25 A, AWAV), a rotated TAN WCS at
0.2"/pix, an exponential light profile with a Gaussian absorption line, Gaussian noise, two NaN
spaxels and one spaxel with zero variance. Deterministic (fixed seed).

Usage: /usr/bin/python3 scripts/make_tiny_cube.py [OUT]
"""
import sys

import numpy as np
from astropy.io import fits

out = sys.argv[1] if len(sys.argv) > 1 else "cubes/tiny_cube.fits"
rng = np.random.default_rng(12345)
nx, ny, nw = 9, 8, 480
wave = 4750.0 + 1.25 * np.arange(nw)
y, x = np.mgrid[0:ny, 0:nx]
r = np.hypot(x - 4.0, y - 3.5)
amp = 200.0 * np.exp(-r / 2.0)  # 1e-20 erg/s/cm2/A
spec = 1.0 - 0.3 * np.exp(-0.5 * ((wave - 5175.0) / 3.0) ** 2) + 2e-4 * (wave - 5000.0)
flux = amp[None, :, :] * spec[:, None, None]
var = (flux.clip(min=0) * 0.5 + 4.0).astype(np.float32)
data = (flux + rng.normal(size=flux.shape) * np.sqrt(var)).astype(np.float32)
data[:, 0, 0] = np.nan
data[:, 7, 8] = np.nan
var[:, 0, 8] = 0.0

hdr = fits.Header()
hdr["WCSAXES"] = 3
hdr["CTYPE1"], hdr["CTYPE2"], hdr["CTYPE3"] = "RA---TAN", "DEC--TAN", "AWAV"
hdr["CUNIT1"], hdr["CUNIT2"], hdr["CUNIT3"] = "deg", "deg", "Angstrom"
hdr["CRVAL1"], hdr["CRVAL2"], hdr["CRVAL3"] = 185.4788, 4.4737, 4750.0
hdr["CRPIX1"], hdr["CRPIX2"], hdr["CRPIX3"] = 5.0, 4.5, 1.0
ang = np.deg2rad(30.0)
s = 0.2 / 3600.0
hdr["CD1_1"], hdr["CD1_2"] = -s * np.cos(ang), s * np.sin(ang)
hdr["CD2_1"], hdr["CD2_2"] = s * np.sin(ang), s * np.cos(ang)
hdr["CD3_3"] = 1.25
hdr["CD1_3"] = hdr["CD2_3"] = hdr["CD3_1"] = hdr["CD3_2"] = 0.0
hdr["RADESYS"] = "ICRS"
hdr["BUNIT"] = "10**(-20)*erg/s/cm**2/Angstrom"
primary = fits.PrimaryHDU()
primary.header["OBJECT"] = "TINY-SYNTHETIC"
primary.header["INSTRUME"] = "MUSE"
primary.header["COMMENT"] = "Synthetic test cube written by cubeflow scripts/make_tiny_cube.py"
dhdu = fits.ImageHDU(data, hdr, name="DATA")
shdr = hdr.copy()
shdr["BUNIT"] = "(10**(-20)*erg/s/cm**2/Angstrom)**2"
shdu = fits.ImageHDU(var, shdr, name="STAT")
fits.HDUList([primary, dhdu, shdu]).writeto(out, overwrite=True, checksum=True)
print(out)
