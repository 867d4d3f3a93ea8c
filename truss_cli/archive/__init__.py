"""Model archives: how a model directory travels from `truss push` to a control plane.

Neutral ground between the two sides: the client packs (`pack`), the control plane unpacks
(`unpack`) and keeps file contents by digest (`blobs`), and neither imports the other's room.
The layout and the limits both sides agree on are in `format`.
"""
