"""List or strip the fatbin images of a CUDA shared library.
usage: fatbin.py LIB [--keep-arch 90 --out OUT]
Zeroes the payload of every image whose arch differs from --keep-arch (headers kept, sizes kept),
so that the file compresses well; the driver loads only the images of its own arch."""
import struct, sys, collections
path = sys.argv[1]
keep = int(sys.argv[sys.argv.index('--keep-arch') + 1]) if '--keep-arch' in sys.argv else None
out = sys.argv[sys.argv.index('--out') + 1] if '--out' in sys.argv else None
data = bytearray(open(path, 'rb').read())
# find the .nv_fatbin section through the ELF section headers
e_shoff, = struct.unpack_from('<Q', data, 0x28)
e_shentsize, e_shnum, e_shstrndx = struct.unpack_from('<HHH', data, 0x3A)
def sh(i):
    return struct.unpack_from('<IIQQQQIIQQ', data, e_shoff + i * e_shentsize)
strtab_off = sh(e_shstrndx)[4]
sec = None
for i in range(e_shnum):
    name, typ, flags, addr, off, size, *_ = sh(i)
    end = data.index(b'\0', strtab_off + name)
    if data[strtab_off + name:end] == b'.nv_fatbin':
        sec = (off, size)
off, size = sec
pos, end = off, off + size
stats = collections.Counter(); zeroed = 0; kept = 0
while pos < end:
    magic, version, hsize, fsize = struct.unpack_from('<IHHQ', data, pos)
    if magic != 0xBA55ED50:
        pos += 8; continue  # alignment padding between containers
    epos = pos + hsize; eend = epos + fsize
    while epos < eend:
        kind, ver, ehsize, psize = struct.unpack_from('<HHIQ', data, epos)
        if ehsize == 0: break
        arch, = struct.unpack_from('<I', data, epos + 28)
        stats[(kind, arch)] += psize
        if keep is not None and arch != keep:
            data[epos + ehsize: epos + ehsize + psize] = bytes(psize); zeroed += psize
        else:
            kept += psize
        epos += ehsize + psize
    pos = eend
for (kind, arch), n in sorted(stats.items()):
    print(f"{'ptx' if kind == 1 else 'elf' if kind == 2 else kind} sm_{arch}: {n/1e6:.1f} MB")
print(f"kept {kept/1e6:.1f} MB, zeroed {zeroed/1e6:.1f} MB")
if out:
    open(out, 'wb').write(data)
