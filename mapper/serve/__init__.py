"""`mapper serve`: a run directory or a label campaign as a local, read-only web app.

    runview.RunView / campaignview.CampaignView   what a directory holds: layers, block grid, inspector data
    tiles                                          XYZ tiles and block pictures from the directory's GeoTIFFs
    app.create_app(view)                           the Flask routes (page, API, tiles, files inside the directory)
    static/                                        the page: index.html, app.js, app.css, Leaflet (vendored)
"""
