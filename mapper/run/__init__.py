"""The production run: plan a region's blocks, run the block stages, and write the map outputs (no Ray here;
Ray orchestration is in mapper.pipelines)."""
