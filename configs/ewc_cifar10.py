r"""EWC (Kirkpatrick et al. 2017) on the ResNet26 of Deecke et al. 2021: BCE against CIFAR-100 OE + Fisher penalty.

  python -m jaxad.main --config=configs/ewc_cifar10.py:normal_class=3,source=/abs/weights/resnet26_head \
      --workdir=/tmp/ewc_c3

The ablation a_5 of Deecke et al. (Table 4): ADIB's objective with L2-SP replaced by elastic weight consolidation,
lambda * sum_j F_j (theta_j - theta_0j)^2 / 2 over the backbone (everything but the AD head), F the empirical
diagonal Fisher of the *source* classifier on `samples` labelled source-domain images.
Arguments: protocol, normal_class, seed (as configs/adib_cifar10.py); source (required: source weights with their
classifier head, i.e. `convert_resnet26_torch.py ... --keep_head`, or `<workdir>/source` of a
configs/pretrain_resnet26_{imagenet32,cifar100}.py run); reference ('imagenet32', the paper's source task, or
'cifar100' for the local stand-in); lam (Fisher multiplier, 400 as the paper); samples (Fisher images, 400);
runlocal.
Paper: Table 4 a_5 (leave-one-out) 0.664 mAP on CIFAR-10, 0.397 on STL-10. jaxad: not yet measured.
"""

from jaxad.config import import_sibling, parse_arg

common = import_sibling(__file__, "common")


def get_config(arg=None):
  args = parse_arg(arg, reference="imagenet32", lam=400.0, samples=400, **common.TRANSFER_ARGS)
  c = common.cifar10_transfer(args, "ewc")
  c.objective.update(loss="bce", regularizer="ewc", ewc_lambda=args.lam, fisher_samples=args.samples)
  common.set_reference(c, args.reference)
  if args.runlocal:
    c.objective.fisher_samples = 16
  return c
