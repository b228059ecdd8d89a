//! Buying once, whatever the network does.
//!
//! An order is placed under the supplier's call discipline
//! ([`crate::resilient::Resilient`]). When the outcome is ambiguous (a
//! timeout after the order was sent, a connection cut before the answer),
//! the order is looked up by its client reference before anything else:
//! found, it is the answer; not found, it is placed again with the same
//! reference (which the supplier's idempotency also guards). Each lookup
//! and placing goes through the discipline, so a supplier that keeps
//! failing opens its circuit instead of being hammered.

use crate::SupplierError;
use crate::connector::{PlacedOrder, PurchaseRequest, SupplierConnector};
use crate::resilient::Resilient;

/// Placings tried after ambiguous outcomes before giving up (the order is
/// then left for reconciliation to settle, never bought blindly).
pub const MAX_AMBIGUOUS: u32 = 3;

/// The wait before looking an order up after an ambiguous outcome: a request
/// still being processed should be found, not placed again.
pub const LOOKUP_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Places `request` once: see the module documentation.
pub async fn buy_once(
    connector: &dyn SupplierConnector,
    discipline: &Resilient,
    request: &PurchaseRequest,
) -> Result<PlacedOrder, SupplierError> {
    let mut ambiguous = 0u32;
    loop {
        let placed = discipline.call(|_| connector.place_order(request)).await;
        let why = match placed {
            Ok(order) => return Ok(order),
            Err(SupplierError::Ambiguous { why, .. }) => why,
            // Retries that ran out may each have reached the supplier.
            Err(SupplierError::Exhausted { last, .. }) => last,
            Err(other) => return Err(other),
        };
        ambiguous += 1;
        // Did the order go through? Give the supplier a moment, then ask
        // before placing it again. Whatever stops the question being
        // answered leaves the outcome unknown, never "not bought".
        tokio::time::sleep(LOOKUP_AFTER).await;
        let found = discipline
            .call(|_| connector.find_order(request))
            .await
            .map_err(|e| SupplierError::Ambiguous {
                supplier: connector.name().to_owned(),
                why: format!(
                    "{why}; looking up reference {} failed: {e}",
                    request.reference
                ),
            })?;
        match found {
            Some(order) => return Ok(order),
            None if ambiguous < MAX_AMBIGUOUS => continue,
            None => {
                return Err(SupplierError::Ambiguous {
                    supplier: connector.name().to_owned(),
                    why: format!(
                        "{why}; still not found by reference {} after {ambiguous} tries",
                        request.reference
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use zeroize::Zeroizing;

    use super::*;
    use crate::connector::{Balance, CatalogueItem, CollectedCode, Money, OrderStatus};
    use crate::resilient::Limits;

    /// A supplier in memory: it keeps orders by reference, as the real ones
    /// do, and can be told to lose the answer after placing an order.
    #[derive(Default)]
    struct Supplier {
        orders: Mutex<std::collections::HashSet<String>>,
        placed: Mutex<u32>,
        lose_answers: Mutex<u32>,
    }

    fn order(reference: &str) -> PlacedOrder {
        let gbp = |amount| Money {
            amount,
            currency: "GBP".into(),
        };
        PlacedOrder {
            supplier_order: format!("so-{reference}"),
            reference: reference.to_owned(),
            charged: Some(gbp(2_500)),
            status: OrderStatus::Complete(vec![CollectedCode {
                code: Zeroizing::new(format!("CODE-{reference}")),
                pin: None,
                claim_url: None,
                expires_at: None,
                face_value: gbp(2_500),
            }]),
        }
    }

    #[async_trait::async_trait]
    impl SupplierConnector for Supplier {
        fn name(&self) -> &str {
            "memory"
        }
        async fn catalogue(&self) -> Result<Vec<CatalogueItem>, SupplierError> {
            Ok(Vec::new())
        }
        async fn place_order(&self, r: &PurchaseRequest) -> Result<PlacedOrder, SupplierError> {
            let mut orders = self.orders.lock().unwrap();
            if orders.insert(r.reference.clone()) {
                *self.placed.lock().unwrap() += 1;
            }
            let mut lose = self.lose_answers.lock().unwrap();
            if *lose > 0 {
                *lose -= 1;
                return Err(SupplierError::Ambiguous {
                    supplier: "memory".into(),
                    why: "timed out after sending".into(),
                });
            }
            Ok(order(&r.reference))
        }
        async fn find_order(
            &self,
            r: &PurchaseRequest,
        ) -> Result<Option<PlacedOrder>, SupplierError> {
            Ok(self
                .orders
                .lock()
                .unwrap()
                .contains(&r.reference)
                .then(|| order(&r.reference)))
        }
        async fn collect(&self, _: &str) -> Result<OrderStatus, SupplierError> {
            Ok(OrderStatus::Pending)
        }
        async fn balance(&self) -> Result<Vec<Balance>, SupplierError> {
            Ok(Vec::new())
        }
    }

    fn request() -> PurchaseRequest {
        PurchaseRequest {
            reference: "sr-r-rp1-0".into(),
            product: "AMZ-GB".into(),
            face_value: Money {
                amount: 2_500,
                currency: "GBP".into(),
            },
        }
    }

    fn discipline() -> Resilient {
        Resilient::new(
            "memory",
            Limits {
                interval: Duration::ZERO,
                ..Limits::default()
            },
            Box::new(|_, _| {}),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_is_found_by_reference_and_bought_once() {
        let supplier = Supplier::default();
        *supplier.lose_answers.lock().unwrap() = 1;
        let got = buy_once(&supplier, &discipline(), &request())
            .await
            .unwrap();
        assert_eq!(got.reference, "sr-r-rp1-0");
        let OrderStatus::Complete(codes) = got.status else {
            panic!("complete")
        };
        assert_eq!(codes.len(), 1);
        assert_eq!(*supplier.placed.lock().unwrap(), 1, "bought once");
        assert!(
            !format!("{codes:?}").contains("CODE-"),
            "codes never in Debug"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_not_found_is_placed_again_with_the_same_reference() {
        /// Loses the order itself (the request never arrived) the first time.
        struct Flaky(Supplier, Mutex<bool>);
        #[async_trait::async_trait]
        impl SupplierConnector for Flaky {
            fn name(&self) -> &str {
                "flaky"
            }
            async fn catalogue(&self) -> Result<Vec<CatalogueItem>, SupplierError> {
                self.0.catalogue().await
            }
            async fn place_order(&self, r: &PurchaseRequest) -> Result<PlacedOrder, SupplierError> {
                let first = std::mem::replace(&mut *self.1.lock().unwrap(), false);
                if first {
                    return Err(SupplierError::Ambiguous {
                        supplier: "flaky".into(),
                        why: "reset".into(),
                    });
                }
                self.0.place_order(r).await
            }
            async fn find_order(
                &self,
                r: &PurchaseRequest,
            ) -> Result<Option<PlacedOrder>, SupplierError> {
                self.0.find_order(r).await
            }
            async fn collect(&self, o: &str) -> Result<OrderStatus, SupplierError> {
                self.0.collect(o).await
            }
            async fn balance(&self) -> Result<Vec<Balance>, SupplierError> {
                self.0.balance().await
            }
        }
        let flaky = Flaky(Supplier::default(), Mutex::new(true));
        let got = buy_once(&flaky, &discipline(), &request()).await.unwrap();
        assert_eq!(got.reference, "sr-r-rp1-0");
        assert_eq!(*flaky.0.placed.lock().unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_fails_leaves_the_outcome_unknown() {
        /// Loses every answer and cannot be asked about orders.
        struct Mute(Supplier);
        #[async_trait::async_trait]
        impl SupplierConnector for Mute {
            fn name(&self) -> &str {
                "mute"
            }
            async fn catalogue(&self) -> Result<Vec<CatalogueItem>, SupplierError> {
                Ok(Vec::new())
            }
            async fn place_order(&self, r: &PurchaseRequest) -> Result<PlacedOrder, SupplierError> {
                *self.0.lose_answers.lock().unwrap() = 1;
                self.0.place_order(r).await
            }
            async fn find_order(
                &self,
                _: &PurchaseRequest,
            ) -> Result<Option<PlacedOrder>, SupplierError> {
                Err(SupplierError::Rejected {
                    supplier: "mute".into(),
                    code: "404".into(),
                    why: "no lookup".into(),
                })
            }
            async fn collect(&self, _: &str) -> Result<OrderStatus, SupplierError> {
                Ok(OrderStatus::Pending)
            }
            async fn balance(&self) -> Result<Vec<Balance>, SupplierError> {
                Ok(Vec::new())
            }
        }
        let mute = Mute(Supplier::default());
        let err = buy_once(&mute, &discipline(), &request())
            .await
            .unwrap_err();
        assert!(matches!(err, SupplierError::Ambiguous { .. }), "{err}");
        assert_eq!(*mute.0.placed.lock().unwrap(), 1, "not placed again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_buys_nothing_and_is_final() {
        struct Broke;
        #[async_trait::async_trait]
        impl SupplierConnector for Broke {
            fn name(&self) -> &str {
                "broke"
            }
            async fn catalogue(&self) -> Result<Vec<CatalogueItem>, SupplierError> {
                Ok(Vec::new())
            }
            async fn place_order(&self, _: &PurchaseRequest) -> Result<PlacedOrder, SupplierError> {
                Err(SupplierError::Rejected {
                    supplier: "broke".into(),
                    code: "RE010".into(),
                    why: "insufficient funds".into(),
                })
            }
            async fn find_order(
                &self,
                _: &PurchaseRequest,
            ) -> Result<Option<PlacedOrder>, SupplierError> {
                panic!("a rejection is not ambiguous: no lookup")
            }
            async fn collect(&self, _: &str) -> Result<OrderStatus, SupplierError> {
                Ok(OrderStatus::Pending)
            }
            async fn balance(&self) -> Result<Vec<Balance>, SupplierError> {
                Ok(Vec::new())
            }
        }
        let err = buy_once(&Broke, &discipline(), &request())
            .await
            .unwrap_err();
        assert!(
            matches!(err, SupplierError::Rejected { ref code, .. } if code == "RE010"),
            "{err}"
        );
    }
}
