"""The administrative units a run reports on, as GeoDataFrames: the region itself, its provinces and its
prefectures."""

from __future__ import annotations


def unit_frames(spec: dict) -> dict:
    """GeoDataFrames (code, name, geometry) of the region itself (none for a country: its provinces are it),
    its provinces and its prefectures."""
    import geopandas as gpd
    import shapely

    from mapper.grid.admin import prefectures_frame, provinces_frame

    provs = provinces_frame()
    provs = provs[provs["ADM1_PCODE"].isin(spec["provinces"])]
    prefs = prefectures_frame()
    prefs = prefs[prefs["ADM2_PCODE"].isin(spec["prefectures"])]
    region = spec["region"]
    if region["kind"] == "bbox":
        region_geoms = [shapely.box(*region["bounds"])]
    elif region["kind"] in ("province", "provinces"):
        region_geoms = list(provs.geometry)
    else:
        region_geoms = []

    def frame(codes, names, geoms):
        return gpd.GeoDataFrame({"code": list(codes), "name": list(names)}, geometry=list(geoms), crs="EPSG:4326")

    return {
        "region": frame(["region"] * len(region_geoms), [spec.get("name", "region")] * len(region_geoms), region_geoms),
        "provinces": frame(provs["ADM1_PCODE"], provs["name"], provs.geometry),
        "prefectures": frame(prefs["ADM2_PCODE"], prefs["ADM2_EN"], prefs.geometry),
    }
