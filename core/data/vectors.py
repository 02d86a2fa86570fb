"""Writing vector files the same way everywhere."""

GPKG_OPTIONS = {"SPATIAL_INDEX": "NO"}
"""GeoPackage creation options. No R-tree index: GDAL builds it with SQLite's rtree module, and a process that has
loaded TensorFlow (whose bundled SQLite lacks that module) first fails to write any GeoPackage ("no such module:
rtree"); QGIS builds the index itself when a layer is large enough to need one."""
