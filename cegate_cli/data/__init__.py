"""GeoTIFF folders, band choice, normalisation statistics, crops and generated scenes."""
