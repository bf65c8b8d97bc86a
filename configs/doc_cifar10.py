r"""DOC (Perera & Patel 2019) on the ResNet26 of Deecke et al. 2021: descriptiveness + compactness from a source net.

  python -m jaxad.main --config=configs/doc_cifar10.py:normal_class=3,source=/abs/weights/resnet26_head \
      --workdir=/tmp/doc_c3

The ablation a_4 of Deecke et al. (Table 4). One network starts from the source weights *with* their classifier
head; each batch is 64 normal images + 64 labelled images of the source task (the reference set). Loss =
cross-entropy of the reference rows on their source classes (descriptiveness) + lam x the compactness of the normal
rows' 256-d pooled features (their intra-batch variance); score = squared distance to the mean pooled feature of
the normal training images under the final network. Training otherwise as ADIB (SGD 0.1, wd 1e-4, 100 epochs).
Arguments: protocol, normal_class, seed (as configs/adib_cifar10.py); source (required, with its head:
`convert_resnet26_torch.py ... --keep_head` or a pretrain_resnet26_* `<workdir>/source`); reference ('imagenet32'
or 'cifar100' for the local stand-in); lam (0.1, DOC's value); runlocal.
Paper: Table 4 a_4 (leave-one-out) 0.658 mAP on CIFAR-10, 0.352 on STL-10. jaxad: not yet measured.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, reference="imagenet32", lam=0.1, **common.TRANSFER_ARGS)
  c = common.cifar10_transfer(args, "doc")
  c.objective.update(loss="doc", regularizer="none", doc_lambda=args.lam)
  common.set_reference(c, args.reference)
  if args.runlocal:
    c.reference.limit = 64
  return c
