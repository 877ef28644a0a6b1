"""ctypes bindings of the few ggml-backend.h functions that say which devices and buffers llama.cpp uses.

llama-cpp-python binds llama.h only; ``pylampe info`` also needs ggml's device list and the CPU's extra
buffer types (AMX, repacked weights). Loaded from pylampe's own libggml, which libllama already loaded.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import List

from ._native import LIB_DIR

# by the sonames libllama was linked with: loaded under another name (libggml.so), glibc maps a second copy,
# with a registry of its own that llama.cpp never sees
_ggml = ctypes.CDLL(str(LIB_DIR / "libggml.so.0"))
_base = ctypes.CDLL(str(LIB_DIR / "libggml-base.so.0"))

# enum ggml_backend_dev_type
_DEV_TYPES = {0: "CPU", 1: "GPU", 2: "iGPU", 3: "accelerator", 4: "meta"}

# GGML_API size_t             ggml_backend_dev_count(void);
_ggml.ggml_backend_dev_count.argtypes = []
_ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
# GGML_API ggml_backend_dev_t ggml_backend_dev_get(size_t index);
_ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
_ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
# GGML_API const char * ggml_backend_dev_name(ggml_backend_dev_t device);  (and _description)
for _fn in (_base.ggml_backend_dev_name, _base.ggml_backend_dev_description):
    _fn.argtypes = [ctypes.c_void_p]
    _fn.restype = ctypes.c_char_p
# GGML_API enum ggml_backend_dev_type ggml_backend_dev_type(ggml_backend_dev_t device);
_base.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
_base.ggml_backend_dev_type.restype = ctypes.c_int
# GGML_API void ggml_backend_dev_memory(ggml_backend_dev_t device, size_t * free, size_t * total);
_base.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                          ctypes.POINTER(ctypes.c_size_t)]
_base.ggml_backend_dev_memory.restype = None
# GGML_API ggml_backend_reg_t ggml_backend_dev_backend_reg(ggml_backend_dev_t device);
_base.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
_base.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
# GGML_API void * ggml_backend_reg_get_proc_address(ggml_backend_reg_t reg, const char * name);
_base.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_base.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
# GGML_API const char * ggml_backend_buft_name(ggml_backend_buffer_type_t buft);
_base.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
_base.ggml_backend_buft_name.restype = ctypes.c_char_p

# typedef ggml_backend_buffer_type_t * (*ggml_backend_dev_get_extra_bufts_t)(ggml_backend_dev_t device);
_EXTRA_BUFTS = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    kind: str
    memory_total: int
    memory_free: int
    # buffer types the device offers for weights besides its own (CPU: "AMX", "CPU_REPACK", ...)
    extra_buffers: List[str]


def _extra_buffers(dev: int) -> List[str]:
    reg = _base.ggml_backend_dev_backend_reg(dev)
    proc = _base.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts") if reg else None
    if not proc:
        return []
    bufts = _EXTRA_BUFTS(proc)(dev)
    names = []
    for i in range(64):  # a NULL-terminated array
        if not bufts[i]:
            break
        names.append(_base.ggml_backend_buft_name(bufts[i]).decode())
    return names


def devices() -> List[Device]:
    """The devices ggml found (the CPU, then GPUs and accelerators), as llama.cpp will use them."""
    found = []
    for i in range(_ggml.ggml_backend_dev_count()):
        dev = _ggml.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        _base.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        found.append(Device(
            name=_base.ggml_backend_dev_name(dev).decode(),
            description=(_base.ggml_backend_dev_description(dev) or b"").decode(),
            kind=_DEV_TYPES.get(_base.ggml_backend_dev_type(dev), "unknown"),
            memory_total=total.value,
            memory_free=free.value,
            extra_buffers=_extra_buffers(dev),
        ))
    return found


# The RPC backend's registry and its entry points (ggml-rpc.h), reached through the registry as llama.cpp's
# own tools do.
# GGML_API ggml_backend_reg_t ggml_backend_reg_by_name(const char * name);
_ggml.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
_ggml.ggml_backend_reg_by_name.restype = ctypes.c_void_p
# GGML_API void ggml_backend_register(ggml_backend_reg_t reg);
_ggml.ggml_backend_register.argtypes = [ctypes.c_void_p]
_ggml.ggml_backend_register.restype = None
# ggml_backend_reg_t ggml_backend_rpc_add_server(const char * endpoint);
_RPC_ADD_SERVER = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)
# bool ggml_backend_rpc_failed(const char * endpoint);
_RPC_FAILED = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_char_p)


def _rpc_proc(name: str) -> int:
    reg = _ggml.ggml_backend_reg_by_name(b"RPC")
    proc = _base.ggml_backend_reg_get_proc_address(reg, name.encode()) if reg else None
    if not proc:
        raise RuntimeError(f"pylampe's llama.cpp has no RPC backend ({name}): reinstall pylampe")
    return proc


def rpc_add_server(endpoint: str) -> bool:
    """Connect to the RPC worker at HOST:PORT and register its devices; False if it cannot be used."""
    reg = _RPC_ADD_SERVER(_rpc_proc("ggml_backend_rpc_add_server"))(endpoint.encode())
    if not reg:
        return False
    _ggml.ggml_backend_register(reg)
    return True


# GGML_API const char * ggml_backend_reg_name(ggml_backend_reg_t reg);
_base.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
_base.ggml_backend_reg_name.restype = ctypes.c_char_p


def offload_devices(rpc_endpoints: List[str]) -> List[int]:
    """The devices llama.cpp's default selection would take, in its order (RPC workers, then GPUs; integrated
    GPUs only without GPUs), except that the workers are these endpoints' only: the registry keeps every
    worker registered in the process, and without an explicit list a model would use them all."""
    rpc, gpus, igpus = [], [], []
    for i in range(_ggml.ggml_backend_dev_count()):
        dev = _ggml.ggml_backend_dev_get(i)
        kind = _DEV_TYPES.get(_base.ggml_backend_dev_type(dev))
        reg = _base.ggml_backend_dev_backend_reg(dev)
        if reg and _base.ggml_backend_reg_name(reg) == b"RPC":
            endpoint = (_base.ggml_backend_dev_description(dev) or b"").decode()
            if endpoint in rpc_endpoints:
                rpc.append((rpc_endpoints.index(endpoint), dev))
        elif kind == "GPU":
            gpus.append(dev)
        elif kind == "iGPU":
            igpus.append(dev)
    return [dev for _, dev in sorted(rpc)] + gpus + (igpus if not gpus else [])


def rpc_failed(endpoint: str) -> bool:
    """True while the worker's connection, as used by the loaded model, has failed."""
    return bool(_RPC_FAILED(_rpc_proc("ggml_backend_rpc_failed"))(endpoint.encode()))
