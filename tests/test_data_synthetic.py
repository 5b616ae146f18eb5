"""Generated scenes: valid GeoTIFFs, deterministic, with a real but learnable domain shift."""

from __future__ import annotations

import time

import numpy as np
import rasterio

from cegate_cli.data.bands import resolve_bands
from cegate_cli.data.folder import discover_images, discover_labeled
from cegate_cli.data.synthetic import DEMO_CLASSES, make_demo_dataset, make_scene, render_scene


def test_scene_is_a_georeferenced_geotiff(tmp_path) -> None:
    image, mask = tmp_path / "img.tif", tmp_path / "mask.tif"
    make_scene(image, mask, size=(64, 80), domain="source", seed=1, collar=True, origin=(600000.0, 4000000.0))
    with rasterio.open(image) as ds, rasterio.open(mask) as ms:
        assert ds.crs.to_epsg() == 32633 and ds.crs.is_projected
        assert ds.transform.a == 10.0 and ds.transform.e == -10.0 and (ds.transform.c, ds.transform.f) == (600000.0, 4000000.0)
        assert (ds.count, ds.height, ds.width, ds.dtypes[0], ds.nodata) == (4, 64, 80, "uint16", 0)
        assert ds.descriptions == ("blue", "green", "red", "nir")
        pixels, labels = ds.read(), ms.read(1)
        assert ms.crs == ds.crs and ms.transform == ds.transform and ms.nodata == 255
        assert ms.colormap(1)[1][:3] == DEMO_CLASSES.classes[1].color
    nodata = (pixels == 0).all(axis=0)
    assert nodata.any() and not nodata.all()
    assert ((pixels == 0).any(axis=0) == nodata).all()  # 0 appears only as whole-pixel nodata
    np.testing.assert_array_equal(labels == 255, nodata)
    assert set(np.unique(labels[~nodata])) <= {0, 1, 2, 3}
    assert pixels.max() <= 10000
    assert resolve_bands("nir,red", image).indexes == (4, 3)


def test_deterministic_and_fast() -> None:
    a = render_scene((256, 256), "target", seed=5)
    b = render_scene((256, 256), "target", seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], render_scene((256, 256), "target", seed=6)[0])
    start = time.perf_counter()
    render_scene((256, 256), "source", seed=0)
    assert time.perf_counter() - start < 0.5


def _pixels(domain: str, seeds: range) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for seed in seeds:
        pixels, labels = render_scene((128, 128), domain, seed, collar=False)  # type: ignore[arg-type]
        xs.append(pixels.reshape(4, -1).T.astype(np.float64))
        ys.append(labels.ravel())
    return np.concatenate(xs), np.concatenate(ys)


def _nearest_centroid(train_x, train_y, mean, std):
    centroids = np.stack([((train_x[train_y == c] - mean) / std).mean(axis=0) for c in range(4)])
    return lambda x: (((x - mean) / std)[:, None] - centroids[None]) ** 2


def test_target_is_shifted_but_learnable() -> None:
    xs, ys = _pixels("source", range(0, 4))
    xs_test, ys_test = _pixels("source", range(10, 14))
    xt, yt = _pixels("target", range(20, 24))
    # Spectral shift: brighter visible bands, weaker NIR.
    assert (xt[:, :3].mean(axis=0) > 1.15 * xs[:, :3].mean(axis=0)).all()
    assert xt[:, 3].mean() < 0.9 * xs[:, 3].mean()
    # Every class is present in both domains.
    assert set(np.unique(ys)) == set(np.unique(yt)) == {0, 1, 2, 3}
    mean, std = xs.mean(axis=0), xs.std(axis=0)
    classify = _nearest_centroid(xs, ys, mean, std)
    source_acc = (classify(xs_test).sum(-1).argmin(1) == ys_test).mean()
    target_acc = (classify(xt).sum(-1).argmin(1) == yt).mean()
    assert source_acc > 0.85 and target_acc < source_acc - 0.25  # a source-fitted model loses on the target
    oracle = _nearest_centroid(xt, yt, xt.mean(axis=0), xt.std(axis=0))
    assert (oracle(xt).sum(-1).argmin(1) == yt).mean() > 0.8  # ... though the target is learnable


def test_target_is_blurrier_noisier_and_coarser(tmp_path) -> None:
    def high_frequency_share(pixels, labels, cls):
        band = pixels[3].astype(np.float64)
        inside = (labels == cls)[1:, 1:] & (labels == cls)[:-1, 1:] & (labels == cls)[1:, :-1]
        grad = np.abs(np.diff(band, axis=0))[:, 1:] + np.abs(np.diff(band, axis=1))[1:, :]
        return grad[inside].mean()

    src = [render_scene((128, 128), "source", s, collar=False) for s in range(3)]
    tgt = [render_scene((128, 128), "target", s, collar=False) for s in range(3)]
    # built-up texture is crisp in the source, smeared by blur in the target
    assert np.mean([high_frequency_share(p, l, 2) for p, l in src]) > 1.3 * np.mean([high_frequency_share(p, l, 2) for p, l in tgt])
    # water is flat in the source, noisy in the target
    assert np.mean([p[3][l == 0].std() for p, l in tgt]) > 2 * np.mean([p[3][l == 0].std() for p, l in src])
    make_scene(tmp_path / "t.tif", None, size=32, domain="target", seed=0)
    with rasterio.open(tmp_path / "t.tif") as ds:
        assert ds.res == (15.0, 15.0) and ds.crs.to_epsg() == 32634


def test_demo_dataset_layout_passes_discovery(tmp_path) -> None:
    demo = make_demo_dataset(tmp_path / "demo", n_source=3, n_target=2, size=64, seed=0)
    source = discover_labeled(demo.source_dir)
    assert len(source.pairs) == 3 and source.class_table.ids == (0, 1, 2, 3)
    assert source.class_table.name_of(2) == "built-up" and source.warnings == []
    assert len(discover_images(demo.target_dir)) == 2
    assert not (demo.target_dir / "masks").exists()
    held_out = discover_labeled(demo.target_labels_dir)
    assert len(held_out.pairs) == 2
    assert {p.image.name for p in held_out.pairs}.isdisjoint(p.name for p in discover_images(demo.target_dir))
    with rasterio.open(source.pairs[2].image) as ds:
        assert (ds.height, ds.width) == (64, 48)
    again = make_demo_dataset(tmp_path / "again", n_source=3, n_target=2, size=64, seed=0)
    for a, b in zip(sorted(demo.root.rglob("*.tif")), sorted(again.root.rglob("*.tif"))):
        with rasterio.open(a) as x, rasterio.open(b) as y:
            assert np.array_equal(x.read(), y.read())
