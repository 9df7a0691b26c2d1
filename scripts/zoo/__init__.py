"""Model-zoo tools: ``verify_bundles`` (the zoo's checks), ``package_bundle`` (the zip), ``export_onnx``."""
