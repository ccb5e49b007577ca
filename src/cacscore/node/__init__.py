"""A DICOM node that scores what it receives (``cacscore listen``).

:mod:`~cacscore.node.queue` keeps received instances durably on disk, :mod:`~cacscore.node.scp` is the
network side (storage SCP, C-ECHO, forwarding by C-STORE), :mod:`~cacscore.node.worker` scores each
complete series once, :mod:`~cacscore.node.dicomweb` fetches studies and stores results over DICOMweb
(``cacscore pacs pull``). See ``docs/integration.md``.
"""
