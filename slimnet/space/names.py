"""The architecture names, alone: params validation needs them, not the model code."""

ARCHS = ("mobilenet_v1", "mobilenet_v2", "mnasnet", "resnet18", "resnet34", "resnet50", "resnet101")
